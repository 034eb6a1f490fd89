"""`train()`'s typed configs from one flat set of fields, for tests that vary one setting at a time.

    from optiml_jax.testing.train_configs import train_configs
    result = train(**train_configs(**{**base, "batch_size": 6}))

Why: a trainer test sweeps one setting (a batch size, a checkpoint period, a callback) over a fixed tiny run; as a
flat dict of fields that is one override, as five configs it is a `dataclasses.replace` per config. Every field
name is unique across the configs (training/run_config.py), so a flat field names its config; a name no config has
is a TypeError naming it. The configs are built (and checked) exactly as gin builds them for the CLI.
"""

from __future__ import annotations

import dataclasses

from optiml_jax.training.run_config import (CheckpointConfig, DataConfig, EvaluationConfig, ExecutionConfig,
                                            OptimizerConfig)

CONFIGS = {"data": DataConfig, "optimizer": OptimizerConfig, "checkpoint": CheckpointConfig,
           "evaluation": EvaluationConfig, "execution": ExecutionConfig}
TRAIN_ARGUMENTS = ("model_config", "setup_callback", "model_config_origin")  # train()'s own, not in a config


def train_configs(**fields) -> dict:
    """train()'s keyword arguments: model_config (and the other TRAIN_ARGUMENTS) as given, every other field in
    the config that owns it."""
    owner = {f.name: key for key, cls in CONFIGS.items() for f in dataclasses.fields(cls)}
    unknown = sorted(set(fields) - set(owner) - set(TRAIN_ARGUMENTS))
    if unknown:
        raise TypeError(f"no train() config has the field(s) {unknown}")
    grouped: dict[str, dict] = {key: {} for key in CONFIGS}
    for name, value in fields.items():
        if name in owner:
            grouped[owner[name]][name] = value
    out = {name: fields[name] for name in TRAIN_ARGUMENTS if name in fields}
    for key, cls in CONFIGS.items():
        if grouped[key] or key in ("data", "optimizer", "checkpoint"):
            out[key] = cls(**grouped[key])
    return out
