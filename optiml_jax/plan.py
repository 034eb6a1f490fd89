"""`python -m optiml_jax.plan`: the front door; the command itself is `optiml_jax.cli.plan` (run with --help)."""

import sys

if __name__ == "__main__":
    from optiml_jax.cli.plan import main

    sys.exit(main())
