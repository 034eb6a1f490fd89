"""Llama-family decoders in Flax Linen, numerically matching Hugging Face's `LlamaForCausalLM`,
`MistralForCausalLM` (no sliding window) and `Qwen2ForCausalLM`.

Same contract as `OPT` (see `opt.py`): `apply({"params": p}, tokens, decoder_segment_ids=..., decoder_positions=...,
deterministic=..., decode=..., return_features=...)`; packed rows restart positions per segment, so rotary
phases restart too and a packed row equals its examples run separately. What the families share (attention
call and KV cache, scan/remat stack, projections, LM head) lives in `common.py`.

Parameter tree (HF names; q/k/v kernels keep a heads axis so tensor parallelism is a sharding rule):

    decoder/embed_tokens/embedding                       [vocab, hidden]        ("vocab", "embed")
    decoder/layers_{i}/input_layernorm/scale              [hidden]
    decoder/layers_{i}/self_attn/q_proj/kernel            [hidden, heads, head_dim]     ("embed", "heads", "kv")
    decoder/layers_{i}/self_attn/{k,v}_proj/kernel        [hidden, kv_heads, head_dim]  ("embed", "kv_heads", "kv")
    decoder/layers_{i}/self_attn/{q,k,v}_proj/bias        (attention_bias: Qwen2)
    decoder/layers_{i}/self_attn/o_proj/kernel            [heads, head_dim, hidden]     ("heads", "kv", "embed")
    decoder/layers_{i}/post_attention_layernorm/scale     [hidden]
    decoder/layers_{i}/mlp/{gate,up}_proj/kernel          [hidden, ffn]   ("embed", "mlp");  down_proj [ffn, hidden]
    decoder/norm/scale                                    [hidden]
    lm_head/kernel                                        [vocab, hidden] ("vocab", "embed"), absent when tied

The untied LM head is stored like the embedding ([vocab, hidden], HF's `lm_head.weight` layout), so
`common.lm_head_logits` serves both. `kv_heads` is its own logical axis: the standard rules leave it
replicated (key/value heads are few); add ("kv_heads", "tensor") / ("activation_kv_heads", "tensor") to
shard them when the tensor axis divides `num_kv_heads`.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from optiml_jax.models.common import (
    EMBED_AXES,
    KV_AXES,
    QKV_AXES,
    CausalLM,
    Projection,
    attend,
    compute_dtype,
    constrain,
    layer_stack,
    lm_head_logits,
    normal_init,
    with_axes,
)
from optiml_jax.models.llama_config import LLAMA_PRESETS, LlamaConfig

Array = jax.Array

__all__ = ["Llama", "LlamaConfig", "LLAMA_PRESETS", "RMSNorm", "apply_rotary", "rotary_cos_sin"]


class RMSNorm(nn.Module):
    """Hugging Face's LlamaRMSNorm: statistics in float32, `scale * normed.astype(compute dtype)`."""

    config: LlamaConfig

    @nn.compact
    def __call__(self, x: Array) -> Array:
        cfg = self.config
        dtype = compute_dtype(cfg)
        scale = self.param("scale", with_axes(nn.initializers.ones, ("embed",)), (cfg.hidden_size,), jnp.float32)
        x32 = x.astype(jnp.float32)
        normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + cfg.rms_norm_eps)
        return scale.astype(dtype) * normed.astype(dtype)


def rotary_cos_sin(config: LlamaConfig, positions: Array) -> tuple[Array, Array]:
    """cos/sin tables [batch, length, head_dim] in the compute dtype for integer positions [batch, length].

    HF layout: the angle for dimension d (and d + head_dim / 2) is position * inv_freq[d]; phases are
    computed in float32 and cast, as in `LlamaRotaryEmbedding`.
    """
    inv_freq = jnp.asarray(config.rope_inv_freq())
    freqs = positions.astype(jnp.float32)[..., None] * inv_freq
    emb = jnp.concatenate([freqs, freqs], axis=-1)
    dtype = compute_dtype(config)
    return jnp.cos(emb).astype(dtype), jnp.sin(emb).astype(dtype)


def _rotate_half(x: Array) -> Array:
    half = x.shape[-1] // 2
    return jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)


@jax.custom_vjp
def apply_rotary(x: Array, cos: Array, sin: Array) -> Array:
    """x [B, L, heads, D] rotated by HF's rotate_half convention; cos/sin [B, L, D].

    Custom VJP because rotate_half is linear with transpose -rotate_half, so dx = g * cos - rotate_half(g *
    sin): one fused elementwise pass like the forward. Autodiff of the concatenate instead pads each half's
    cotangent back to full width and adds them (two pad fusions per projection per layer on XLA:CPU).
    cos/sin come from integer positions and get no cotangent.
    """
    return x * cos[:, :, None] + _rotate_half(x) * sin[:, :, None]


def _apply_rotary_fwd(x, cos, sin):
    return apply_rotary(x, cos, sin), (cos, sin)


def _apply_rotary_bwd(residuals, g):
    cos, sin = residuals
    return g * cos[:, :, None] - _rotate_half(g * sin[:, :, None]), None, None


apply_rotary.defvjp(_apply_rotary_fwd, _apply_rotary_bwd)


class LlamaAttention(nn.Module):
    """Grouped-query self-attention with rotary positions and an optional KV cache of the kv heads only."""

    config: LlamaConfig

    @nn.compact
    def __call__(self, x: Array, segment_ids: Array, cos: Array, sin: Array, *, decode: bool = False) -> Array:
        cfg = self.config
        h, hd = cfg.hidden_size, cfg.head_dim
        proj = functools.partial(Projection, cfg, 1, use_bias=cfg.attention_bias)
        q = proj(("embed", "heads", "kv"), (h, cfg.num_heads, hd), ("heads", "kv"), name="q_proj")(x)
        k = proj(("embed", "kv_heads", "kv"), (h, cfg.num_kv_heads, hd), ("kv_heads", "kv"), name="k_proj")(x)
        v = proj(("embed", "kv_heads", "kv"), (h, cfg.num_kv_heads, hd), ("kv_heads", "kv"), name="v_proj")(x)
        q = constrain(apply_rotary(q, cos, sin), QKV_AXES)
        k = constrain(apply_rotary(k, cos, sin), KV_AXES)
        v = constrain(v, KV_AXES)
        out = constrain(attend(self, cfg, q, k, v, segment_ids, decode=decode), QKV_AXES)
        return Projection(cfg, 2, ("heads", "kv", "embed"), (cfg.num_heads, hd, h), ("embed",),
                          use_bias=cfg.attention_out_bias, name="o_proj")(out)


class LlamaMLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    config: LlamaConfig

    @nn.compact
    def __call__(self, x: Array) -> Array:
        cfg = self.config
        h, f = cfg.hidden_size, cfg.ffn_dim
        proj = functools.partial(Projection, cfg, 1, use_bias=cfg.mlp_bias)
        gate = proj(("embed", "mlp"), (h, f), ("mlp",), name="gate_proj")(x)
        up = proj(("embed", "mlp"), (h, f), ("mlp",), name="up_proj")(x)
        act = constrain(nn.silu(gate) * up, ("activation_batch", "activation_length", "activation_mlp"))
        return proj(("mlp", "embed"), (f, h), ("embed",), name="down_proj")(act)


class LlamaDecoderLayer(nn.Module):
    """Pre-norm block: x + attn(norm(x)), then x + mlp(norm(x))."""

    config: LlamaConfig

    @nn.compact
    def __call__(self, x, segment_ids, cos, sin, deterministic: bool = True, decode: bool = False):
        cfg = self.config
        h = RMSNorm(cfg, name="input_layernorm")(x)
        h = LlamaAttention(cfg, name="self_attn")(h, segment_ids, cos, sin, decode=decode)
        x = constrain(x + nn.Dropout(cfg.dropout_rate)(h, deterministic=deterministic), EMBED_AXES)
        h = LlamaMLP(cfg, name="mlp")(RMSNorm(cfg, name="post_attention_layernorm")(x))
        return constrain(x + nn.Dropout(cfg.dropout_rate)(h, deterministic=deterministic), EMBED_AXES)


class LlamaDecoder(nn.Module):
    config: LlamaConfig

    @nn.compact
    def __call__(self, tokens, segment_ids, positions, deterministic: bool = True, decode: bool = False):
        """-> (features after the final norm [B, L, hidden], token embedding [vocab, hidden])."""
        cfg = self.config
        embed_tokens = nn.Embed(
            cfg.vocab_size, cfg.hidden_size, dtype=compute_dtype(cfg), param_dtype=jnp.float32,
            embedding_init=with_axes(normal_init(cfg), ("vocab", "embed")), name="embed_tokens",
        )
        x = nn.Dropout(cfg.dropout_rate)(embed_tokens(tokens), deterministic=deterministic)
        x = constrain(x, EMBED_AXES)
        cos, sin = rotary_cos_sin(cfg, positions)  # once per call, shared by every layer
        x = layer_stack(cfg, LlamaDecoderLayer, x, (segment_ids, cos, sin), deterministic, decode)
        return RMSNorm(cfg, name="norm")(x), embed_tokens.embedding


class Llama(CausalLM):
    """Llama-family causal language model (the `CausalLM` call contract, as `OPT`); `return_features=True` gives
    the final-norm hidden states ([batch, length, hidden]) for `lm_head_logits(config, lm_head_weight(config,
    params), ...)`.
    """

    config: LlamaConfig

    def logits_or_features(self, tokens, segment_ids, positions, deterministic, decode, return_features):
        cfg = self.config
        features, embedding = LlamaDecoder(cfg, name="decoder")(tokens, segment_ids, positions, deterministic, decode)
        if cfg.tie_word_embeddings:
            head = embedding
        else:  # created before any early return, so init with return_features=True still builds it
            head = _LMHead(cfg, name="lm_head")()
        if return_features:
            return features
        return lm_head_logits(cfg, head, features)


class _LMHead(nn.Module):
    config: LlamaConfig

    @nn.compact
    def __call__(self) -> Array:
        cfg = self.config
        return self.param("kernel", with_axes(normal_init(cfg), ("vocab", "embed")), (cfg.vocab_size, cfg.hidden_size),
                          jnp.float32)


def llama_lm_head(config: LlamaConfig, params: Any) -> Array:
    """The LM head matrix [vocab, hidden] (the token embedding when tied) from a parameter tree, boxed or not."""
    params = nn.unbox(params)
    if config.tie_word_embeddings:
        return params["decoder"]["embed_tokens"]["embedding"]
    return params["lm_head"]["kernel"]
