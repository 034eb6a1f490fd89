"""`python -m optiml_jax.infer`: the front door; the command itself is `optiml_jax.cli.infer` (run with --help)."""

import sys

if __name__ == "__main__":
    from optiml_jax.cli.infer import main

    sys.exit(main())
