"""Registrations that need gin values (data directories, tokenizer) run after the CLI has parsed gin.

Import-time registration (`optiml_jax.tasks.registrations`) cannot see `--gin.NIV2_DATA_DIR=...`; a gin file lists the
registration functions to call once the configuration is complete, e.g. in `gin/bench/opt_iml_bench.gin`:
    run_registrations.registrations = [@register_opt_iml_bench]
"""

from __future__ import annotations

from typing import Callable, Sequence

import gin


@gin.configurable
def run_registrations(registrations: Sequence[Callable[[], object]] = ()) -> list[str]:
    """Calls each configured registration function; returns the task names those that return lists registered."""
    names: list[str] = []
    for register in registrations:
        out = register()
        if isinstance(out, (list, tuple)):
            names.extend(out)
    return names
