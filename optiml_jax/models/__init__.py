"""Decoder families in Flax (OPT; Llama/Mistral/Qwen2). Importable without TensorFlow, SeqIO or gin
(accelerator hosts lack them)."""

from optiml_jax.models.config import OPT_VOCAB_SIZE, PRESETS, OPTConfig
from optiml_jax.models.family import (
    ModelConfig,
    config_from_dict,
    family_of,
    init_model_params,
    lm_head_weight,
    model_for,
    model_logical_axes,
)
from optiml_jax.models.generation import generate, greedy_reference
from optiml_jax.models.layout import stack_layers, to_layout, unstack_layers
from optiml_jax.models.llama import Llama
from optiml_jax.models.llama_config import LLAMA_PRESETS, LlamaConfig
from optiml_jax.models.opt import (
    OPT,
    default_positions,
    init_params,
    lm_head_logits,
    param_logical_axes,
    tied_embedding,
)

__all__ = [
    "LLAMA_PRESETS",
    "Llama",
    "LlamaConfig",
    "ModelConfig",
    "OPT",
    "OPTConfig",
    "OPT_VOCAB_SIZE",
    "PRESETS",
    "config_from_dict",
    "default_positions",
    "family_of",
    "generate",
    "greedy_reference",
    "init_model_params",
    "init_params",
    "lm_head_logits",
    "lm_head_weight",
    "model_for",
    "model_logical_axes",
    "param_logical_axes",
    "stack_layers",
    "tied_embedding",
    "to_layout",
    "unstack_layers",
]
