"""`python -m optiml_jax.cli.tasks`: same as `python -m optiml_jax.tasks`."""

import sys

from optiml_jax.cli.tasks import console_main

if __name__ == "__main__":
    console_main()
