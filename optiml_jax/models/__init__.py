"""OPT decoder in Flax. Importable without TensorFlow, SeqIO or gin (accelerator hosts lack them)."""

from optiml_jax.models.config import OPT_VOCAB_SIZE, PRESETS, OPTConfig
from optiml_jax.models.generation import generate, greedy_reference
from optiml_jax.models.layout import stack_layers, to_layout, unstack_layers
from optiml_jax.models.opt import (
    OPT,
    default_positions,
    init_params,
    lm_head_logits,
    param_logical_axes,
    tied_embedding,
)

__all__ = [
    "OPT",
    "OPTConfig",
    "OPT_VOCAB_SIZE",
    "PRESETS",
    "default_positions",
    "generate",
    "greedy_reference",
    "init_params",
    "lm_head_logits",
    "param_logical_axes",
    "stack_layers",
    "tied_embedding",
    "to_layout",
    "unstack_layers",
]
