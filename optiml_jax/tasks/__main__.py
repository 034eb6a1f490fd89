"""`python -m optiml_jax.tasks`: the front door; the command itself is `optiml_jax.cli.tasks` (run with --help)."""

import sys

if __name__ == "__main__":
    from optiml_jax.cli.tasks import console_main

    console_main()
