"""`python -m optiml_jax.eval`: the front door; the command itself is `optiml_jax.cli.eval` (run with --help)."""

import sys

if __name__ == "__main__":
    from optiml_jax.cli.eval import main

    sys.exit(main())
