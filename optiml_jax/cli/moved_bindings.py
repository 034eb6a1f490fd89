"""train()'s flat gin bindings of before the typed configs (`train.learning_rate = ...`), answered with the
binding that carries the setting now (`OptimizerConfig.learning_rate`, or its macro LEARNING_RATE).

Why: a user's own gin file written for the flat `train()` would otherwise get gin's bare "Configurable 'train'
doesn't have a parameter named ..." with no hint of where the setting went. Kept for one release.
"""

from __future__ import annotations

import dataclasses
import re

_UNKNOWN_TRAIN_PARAMETER = re.compile(r"Configurable '(?:[\w.]*\.)?train' doesn't have a parameter named '(\w+)'")


def moved_binding_message(gin_error: str) -> str | None:
    """The one-line answer to gin's unknown-parameter error for `train.<field>` when a config owns the field now."""
    match = _UNKNOWN_TRAIN_PARAMETER.search(gin_error)
    if not match:
        return None
    from optiml_jax.training import run_config

    field = match.group(1)
    for cls in (run_config.DataConfig, run_config.OptimizerConfig, run_config.CheckpointConfig,
                run_config.EvaluationConfig, run_config.ExecutionConfig):
        if field in {f.name for f in dataclasses.fields(cls)}:
            macro = run_config.MACRO_OF.get(field)
            via = f" (or its macro {macro})" if macro else ""
            return (f"train.{field} is now {cls.__name__}.{field}: train() takes typed configs "
                    f"(optiml_jax/training/run_config.py); bind {cls.__name__}.{field}{via} instead")
    return None
