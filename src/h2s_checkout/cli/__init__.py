"""The command line, above every layer: `h2s-checkout <command>` (main.py) with what its
commands print, and the two development commands the justfile runs: `just docs`
(diagram.py) and `just fuzz` (fuzz.py)."""
