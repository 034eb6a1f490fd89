"""Checkpoint conversion: Hugging Face OPT <-> optiml_jax params, Orbax parameter checkpoints.

CLI: `python -m optiml_jax.convert hf-to-orbax --hf_dir D --out_dir O` and
`python -m optiml_jax.convert orbax-to-hf --orbax_dir O --out_dir D`. No TensorFlow imports.
"""

from optiml_jax.checkpoints.hf import (
    CheckpointError,
    config_from_hf,
    config_to_hf,
    load_hf_opt,
    save_hf_opt,
    tensor_specs,
)
from optiml_jax.checkpoints.orbax_params import abstract_params, is_orbax_dir, load_orbax, load_params, save_orbax

__all__ = [
    "CheckpointError",
    "abstract_params",
    "config_from_hf",
    "config_to_hf",
    "is_orbax_dir",
    "load_hf_opt",
    "load_orbax",
    "load_params",
    "save_hf_opt",
    "save_orbax",
    "tensor_specs",
]
