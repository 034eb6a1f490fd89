"""Decoder families by config type: which Flax module a config builds, how a stored config is read back.

    config_from_dict(json.loads(text))   # {"family": "llama", ...} -> LlamaConfig; no "family" -> OPTConfig
    model_for(config)                    # OPT(config) or Llama(config)
    lm_head_weight(config, params)       # [vocab, embed] matrix the LM head multiplies by (tied or not)

Every family's module has the same `__call__` contract (tokens, decoder_segment_ids, decoder_positions,
deterministic, decode, return_features) and the same parameter-tree root (`decoder/...`, layers as
`layers_{i}` or scanned `layers`), so layout helpers, generation and checkpoints work on any of them.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from optiml_jax.models.config import OPTConfig
from optiml_jax.models.llama_config import LlamaConfig

CONFIG_CLASSES = {"opt": OPTConfig, "llama": LlamaConfig}
ModelConfig = OPTConfig | LlamaConfig


def family_of(config: Any) -> str:
    family = getattr(type(config), "family", None)
    if family not in CONFIG_CLASSES or not isinstance(config, CONFIG_CLASSES[family]):
        raise TypeError(f"not a model config: {type(config).__name__} (known: "
                        f"{', '.join(c.__name__ for c in CONFIG_CLASSES.values())})")
    return family


def config_from_dict(d: dict[str, Any]) -> ModelConfig:
    """The config a `to_dict()` / `to_json()` wrote, whatever its family (absent "family" = OPT)."""
    d = dict(d)
    family = d.pop("family", "opt")
    if family not in CONFIG_CLASSES:
        raise ValueError(f"unknown model family {family!r}; known: {sorted(CONFIG_CLASSES)}")
    return CONFIG_CLASSES[family].from_dict(d)


def model_for(config: ModelConfig) -> nn.Module:
    if family_of(config) == "opt":
        from optiml_jax.models.opt import OPT

        return OPT(config)
    from optiml_jax.models.llama import Llama

    return Llama(config)


def lm_head_weight(config: ModelConfig, params: Any) -> jax.Array:
    """The [vocab, embed] matrix of the LM head (`common.lm_head_logits`): OPT's tied embedding, Llama's
    embedding or untied `lm_head/kernel`."""
    if family_of(config) == "opt":
        from optiml_jax.models.opt import tied_embedding

        return tied_embedding(params)
    from optiml_jax.models.llama import llama_lm_head

    return llama_lm_head(config, params)


def init_model_params(config: ModelConfig, rng: jax.Array, *, batch: int = 1, length: int = 8,
                      boxed: bool = False) -> Any:
    """Initialise float32 parameters for any family (plain arrays unless `boxed`)."""
    params = model_for(config).init(rng, jnp.ones((batch, length), jnp.int32))["params"]
    return params if boxed else nn.unbox(params)


def model_logical_axes(config: ModelConfig) -> Any:
    """Logical-axis PartitionSpecs (same structure as params) for any family, computed abstractly."""
    boxed = jax.eval_shape(lambda: model_for(config).init(jax.random.key(0), jnp.ones((1, 8), jnp.int32)))["params"]
    return nn.get_partition_spec(boxed)
