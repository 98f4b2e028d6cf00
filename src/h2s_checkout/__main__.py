"""`python -m h2s_checkout`: the `h2s-checkout` command (cli/main.py)."""

import sys

from h2s_checkout.cli.main import main

# Guarded: a worker process started by spawning imports this module again (as __mp_main__).
if __name__ == "__main__":
    sys.exit(main())
