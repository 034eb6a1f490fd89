"""`python -m optiml_jax.train`: the front door; the command itself is `optiml_jax.cli.train` (run with --help)."""

import sys

if __name__ == "__main__":
    from optiml_jax.cli.train import console_main

    sys.exit(console_main())
