"""`python -m optiml_jax.convert`: the front door; the command itself is `optiml_jax.cli.convert` (run with --help)."""

import sys

if __name__ == "__main__":
    from optiml_jax.cli.convert import main

    sys.exit(main())
