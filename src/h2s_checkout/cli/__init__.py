"""The command line, above every layer: `h2s-checkout <command>` (main.py holds the one
argument parser and dispatches to the command's module: serve, migrate, reconcile, doctor,
trace, keys, reap_keys, listen, smoke), and the two development commands the justfile runs,
each with its own few options: `just docs` (diagram.py) and `just fuzz` (fuzz.py)."""
