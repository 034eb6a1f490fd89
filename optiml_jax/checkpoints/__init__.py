"""Checkpoint conversion: Hugging Face OPT / Llama / Mistral / Qwen2 <-> optiml_jax params, metaseq OPT checkpoints
(consolidated or model-parallel parts) -> optiml_jax / Hugging Face, Orbax parameter checkpoints.

CLI: `python -m optiml_jax.convert hf-to-orbax --hf_dir D --out_dir O` and
`python -m optiml_jax.convert orbax-to-hf --orbax_dir O --out_dir D`. No TensorFlow imports.
`load_hf` / `save_hf` pick the family (config.json's model_type / the config's type).
"""

from optiml_jax.checkpoints.families import hf_model_type, load_hf, save_hf
from optiml_jax.checkpoints.hf import (
    config_from_hf,
    config_to_hf,
    load_hf_opt,
    save_hf_opt,
    tensor_specs,
)
from optiml_jax.checkpoints.hf_llama import (
    config_from_hf_llama,
    config_to_hf_llama,
    load_hf_llama,
    save_hf_llama,
    tensor_specs_llama,
)
from optiml_jax.checkpoints.hf_tensors import CheckpointError
from optiml_jax.checkpoints.metaseq import MetaseqCheckpointError, load_metaseq, metaseq_config
from optiml_jax.checkpoints.metaseq_export import metaseq_to_hf
from optiml_jax.checkpoints.orbax_params import abstract_params, is_orbax_dir, load_orbax, load_params, save_orbax

__all__ = [
    "CheckpointError",
    "MetaseqCheckpointError",
    "abstract_params",
    "config_from_hf",
    "config_from_hf_llama",
    "config_to_hf",
    "config_to_hf_llama",
    "hf_model_type",
    "is_orbax_dir",
    "load_hf",
    "load_hf_llama",
    "load_hf_opt",
    "load_metaseq",
    "load_orbax",
    "load_params",
    "metaseq_config",
    "metaseq_to_hf",
    "save_hf",
    "save_hf_llama",
    "save_hf_opt",
    "save_orbax",
    "tensor_specs",
    "tensor_specs_llama",
]
