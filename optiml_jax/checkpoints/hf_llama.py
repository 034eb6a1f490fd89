"""Hugging Face Llama / Mistral / Qwen2 checkpoints <-> optiml_jax parameters, streamed one tensor at a time.

`load_hf_llama(directory)` reads a `LlamaForCausalLM`, `MistralForCausalLM` or `Qwen2ForCausalLM` directory
(`config.json` plus safetensors or .bin, sharded or not; the machinery of `hf_tensors`) and returns
`(LlamaConfig, float32 numpy params)`; `save_hf_llama(config, params, directory)` writes one that
`transformers` loads with the matching class (`config.hf_model_type`).

What is refused, with every problem listed: other `model_type`s, activations other than silu, RoPE types
other than default/llama3 (or partial rotary), and sliding-window attention whose window is shorter than
`max_position_embeddings` (Mistral v0.1's 4096, Qwen2 with `use_sliding_window`): our attention is full
causal, so such a model would compute something else. A window >= max positions never binds and is accepted.

Name mapping (HF keys `model.` ... except `lm_head.weight`):

| HF                                         | optiml_jax                                  | transform |
|--------------------------------------------|---------------------------------------------|-----------|
| `model.embed_tokens.weight` [V, H]         | `decoder/embed_tokens/embedding`            | copy |
| `model.norm.weight` [H]                    | `decoder/norm/scale`                        | copy |
| `lm_head.weight` [V, H] (untied only)      | `lm_head/kernel` [V, H]                     | copy |
| `model.layers.i.self_attn.q_proj.weight` [nh*hd, H] | `decoder/layers_i/self_attn/q_proj/kernel` [H, nh, hd] | transpose + reshape |
| `...{k,v}_proj.weight` [kvh*hd, H]         | `.../{k,v}_proj/kernel` [H, kvh, hd]        | transpose + reshape |
| `...{q,k,v}_proj.bias`                     | `.../bias` [heads, hd]                      | reshape |
| `...o_proj.weight` [H, nh*hd]              | `.../o_proj/kernel` [nh, hd, H]             | transpose + reshape |
| `model.layers.i.mlp.{gate,up,down}_proj.weight` | `decoder/layers_i/mlp/{...}/kernel`    | transpose |
| `model.layers.i.{input,post_attention}_layernorm.weight` | `decoder/layers_i/{...}/scale`  | copy |

HF's q/k weights are already in the rotate-half layout our rotary uses: no permutation. A tied checkpoint may
carry `lm_head.weight`; it must equal the embedding. Non-persistent `rotary_emb.inv_freq` buffers are ignored.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

from optiml_jax.checkpoints import hf_tensors
from optiml_jax.checkpoints.hf_tensors import TensorSpec, as_is, transposed
from optiml_jax.models.llama_config import HF_MODEL_TYPES, LlamaConfig

ARCHITECTURES = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM"}
_HF_DEFAULT_MAX_POSITIONS = {"llama": 2048, "mistral": 32768, "qwen2": 32768}
_KIND = "Llama-family"


def _error(where, problems) -> hf_tensors.CheckpointError:
    return hf_tensors.CheckpointError(where, problems, kind=_KIND)


# ----------------------------------------------------------------------------------------------- config


def _rope_fields(hf: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    if not isinstance(rope, dict) or (rope and "rope_type" not in rope and "type" not in rope
                                      and "rope_theta" not in rope):
        problems.append(f"rope parameters {rope!r}: per-layer RoPE parameters are not supported")
        return {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    theta = rope.get("rope_theta", hf.get("rope_theta", 10000.0))
    if float(rope.get("partial_rotary_factor", hf.get("partial_rotary_factor", 1.0)) or 1.0) != 1.0:
        problems.append("partial_rotary_factor != 1 is not supported")
    out = dict(rope_theta=float(theta), rope_type=rope_type)
    if rope_type == "llama3":
        missing = [k for k in ("factor", "low_freq_factor", "high_freq_factor") if k not in rope]
        if missing:
            problems.append(f"llama3 rope parameters lack {missing}")
            return out
        out.update(rope_factor=float(rope["factor"]), rope_low_freq_factor=float(rope["low_freq_factor"]),
                   rope_high_freq_factor=float(rope["high_freq_factor"]),
                   rope_original_max_position_embeddings=rope.get("original_max_position_embeddings"))
    elif rope_type != "default":
        problems.append(f"rope_type {rope_type!r} is not supported (default and llama3 are)")
    return out


def _check_sliding_window(hf: dict[str, Any], model_type: str, max_positions: int, problems: list[str]) -> None:
    window = hf.get("sliding_window")
    if model_type == "qwen2":
        layer_types = hf.get("layer_types")
        if layer_types is not None:
            sliding = "sliding_attention" in layer_types
        else:
            sliding = bool(hf.get("use_sliding_window", False)) and hf.get("max_window_layers", 0) < hf.get(
                "num_hidden_layers", 0)
        if not sliding:
            return
    if model_type in ("mistral", "qwen2") and window is not None and window < max_positions:
        problems.append(f"sliding_window={window} < max_position_embeddings={max_positions}: sliding-window "
                        "attention is not supported (full causal attention would differ beyond the window); "
                        "a window >= max_position_embeddings (or null) is accepted")


def config_from_hf_llama(hf: dict[str, Any], where: str = "config.json") -> LlamaConfig:
    """Our LlamaConfig from a Llama / Mistral / Qwen2 `config.json` dict (HF defaults for absent fields)."""
    problems: list[str] = []
    model_type = hf.get("model_type")
    if model_type not in HF_MODEL_TYPES:
        raise _error(where, [f"model_type is {model_type!r}, expected one of {list(HF_MODEL_TYPES)}"])
    required = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size")
    problems += [f"missing required field {name!r}" for name in required if name not in hf]
    act = hf.get("hidden_act", "silu")
    if act != "silu":
        problems.append(f"hidden_act is {act!r}; only silu (SwiGLU) models are supported")
    max_positions = hf.get("max_position_embeddings", _HF_DEFAULT_MAX_POSITIONS[model_type])
    rope = _rope_fields(hf, problems)
    _check_sliding_window(hf, model_type, max_positions, problems)
    if problems:
        raise _error(where, problems)
    hidden, heads = hf["hidden_size"], hf["num_attention_heads"]
    head_dim = hf.get("head_dim") or hidden // heads
    if model_type == "qwen2":
        qkv_bias, out_bias, mlp_bias = True, False, False
    elif model_type == "mistral":
        qkv_bias = out_bias = mlp_bias = False
    else:
        qkv_bias = out_bias = bool(hf.get("attention_bias", False))
        mlp_bias = bool(hf.get("mlp_bias", False))
    eos = hf.get("eos_token_id")
    try:
        return LlamaConfig(
            hidden_size=hidden, num_layers=hf["num_hidden_layers"], num_heads=heads,
            num_kv_heads=hf.get("num_key_value_heads") or heads, ffn_dim=hf["intermediate_size"],
            vocab_size=hf["vocab_size"], max_position_embeddings=max_positions,
            head_dim_override=None if head_dim * heads == hidden and hidden % heads == 0 else head_dim,
            rms_norm_eps=hf.get("rms_norm_eps", 1e-6), attention_bias=qkv_bias, attention_out_bias=out_bias,
            mlp_bias=mlp_bias, tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
            init_std=hf.get("initializer_range", 0.02), pad_token_id=hf.get("pad_token_id"),
            bos_token_id=hf.get("bos_token_id"), eos_token_id=tuple(eos) if isinstance(eos, list) else eos,
            hf_model_type=model_type, **rope,
        )
    except ValueError as e:
        raise _error(where, [str(e)]) from e


def config_to_hf_llama(config: LlamaConfig) -> dict[str, Any]:
    """The `config.json` dict `transformers` reads for this model (architecture = `config.hf_model_type`)."""
    kind = config.hf_model_type
    problems = []
    if kind == "llama" and config.attention_bias != config.attention_out_bias:
        problems.append("Hugging Face Llama has one attention_bias for q/k/v and o_proj; with q/k/v biases only "
                        "export as hf_model_type='qwen2'")
    if kind == "qwen2" and (not config.attention_bias or config.attention_out_bias or config.mlp_bias):
        problems.append("Qwen2 has q/k/v biases, no o_proj or MLP biases")
    if kind == "mistral" and (config.attention_bias or config.attention_out_bias or config.mlp_bias):
        problems.append("Mistral has no biases")
    if problems:
        raise _error("LlamaConfig", problems)
    rope: dict[str, Any] = {"rope_type": config.rope_type, "rope_theta": config.rope_theta}
    if config.rope_type == "llama3":
        rope.update(factor=config.rope_factor, low_freq_factor=config.rope_low_freq_factor,
                    high_freq_factor=config.rope_high_freq_factor,
                    original_max_position_embeddings=(config.rope_original_max_position_embeddings
                                                      or config.max_position_embeddings))
    eos = config.eos_token_id
    hf = {
        "architectures": [ARCHITECTURES[kind]],
        "model_type": kind,
        "hidden_act": "silu",
        "hidden_size": config.hidden_size,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "num_key_value_heads": config.num_kv_heads,
        "head_dim": config.head_dim,
        "intermediate_size": config.ffn_dim,
        "vocab_size": config.vocab_size,
        "max_position_embeddings": config.max_position_embeddings,
        "rms_norm_eps": config.rms_norm_eps,
        "rope_parameters": rope,  # transformers >= 5
        "rope_theta": config.rope_theta,  # transformers 4.x
        "rope_scaling": rope if config.rope_type != "default" else None,
        "tie_word_embeddings": config.tie_word_embeddings,
        "initializer_range": config.init_std,
        "attention_dropout": 0.0,
        "pad_token_id": config.pad_token_id,
        "bos_token_id": config.bos_token_id,
        "eos_token_id": list(eos) if isinstance(eos, tuple) else eos,
        "use_cache": True,
        "torch_dtype": "float32",
    }
    if kind == "llama":
        hf.update(attention_bias=config.attention_bias, mlp_bias=config.mlp_bias, pretraining_tp=1)
    elif kind == "mistral":
        hf.update(sliding_window=None)
    else:
        hf.update(use_sliding_window=False, sliding_window=None, max_window_layers=config.num_layers,
                  layer_types=["full_attention"] * config.num_layers)
    return hf


# ------------------------------------------------------------------------------------ tensor mapping


def tensor_specs_llama(config: LlamaConfig) -> list[TensorSpec]:
    """Every tensor of an HF checkpoint for `config` (full HF keys; `lm_head.weight` only when untied)."""
    h, f, v = config.hidden_size, config.ffn_dim, config.vocab_size
    nh, kvh, hd = config.num_heads, config.num_kv_heads, config.head_dim
    specs = [TensorSpec("model.embed_tokens.weight", ("decoder", "embed_tokens", "embedding"), (v, h), as_is, as_is)]
    for i in range(config.num_layers):
        hf, ours = f"model.layers.{i}", ("decoder", f"layers_{i}")
        attn = (*ours, "self_attn")
        for name, heads in (("q_proj", nh), ("k_proj", kvh), ("v_proj", kvh)):
            specs.append(TensorSpec(
                f"{hf}.self_attn.{name}.weight", (*attn, name, "kernel"), (heads * hd, h),
                lambda w, n=heads: w.T.reshape(h, n, hd), lambda k, n=heads: k.reshape(h, n * hd).T, i))
            if config.attention_bias:
                specs.append(TensorSpec(
                    f"{hf}.self_attn.{name}.bias", (*attn, name, "bias"), (heads * hd,),
                    lambda b, n=heads: b.reshape(n, hd), lambda b, n=heads: b.reshape(n * hd), i))
        specs.append(TensorSpec(f"{hf}.self_attn.o_proj.weight", (*attn, "o_proj", "kernel"), (h, nh * hd),
                                lambda w: w.T.reshape(nh, hd, h), lambda k: k.reshape(nh * hd, h).T, i))
        if config.attention_out_bias:
            specs.append(TensorSpec(f"{hf}.self_attn.o_proj.bias", (*attn, "o_proj", "bias"), (h,), as_is, as_is, i))
        for name, shape in (("gate_proj", (f, h)), ("up_proj", (f, h)), ("down_proj", (h, f))):
            specs.append(TensorSpec(f"{hf}.mlp.{name}.weight", (*ours, "mlp", name, "kernel"), shape,
                                    transposed, transposed, i))
            if config.mlp_bias:
                specs.append(TensorSpec(f"{hf}.mlp.{name}.bias", (*ours, "mlp", name, "bias"), (shape[0],),
                                        as_is, as_is, i))
        for name in ("input_layernorm", "post_attention_layernorm"):
            specs.append(TensorSpec(f"{hf}.{name}.weight", (*ours, name, "scale"), (h,), as_is, as_is, i))
    specs.append(TensorSpec("model.norm.weight", ("decoder", "norm", "scale"), (h,), as_is, as_is))
    if not config.tie_word_embeddings:
        specs.append(TensorSpec("lm_head.weight", ("lm_head", "kernel"), (v, h), as_is, as_is))
    return specs


# ---------------------------------------------------------------------------------------- load / save


LLAMA_FAMILY = hf_tensors.HFFamily(
    kind=_KIND, config_from_hf=config_from_hf_llama, tensor_specs=tensor_specs_llama,
    spec_key=lambda key: None if key.endswith("rotary_emb.inv_freq") else key,  # non-persistent buffers
    may_tie=lambda config: config.tie_word_embeddings,
    unexpected_note="not part of this model's config",
    untied_head_problem="lm_head.weight differs from model.embed_tokens.weight but config.json says "
                        "tie_word_embeddings=true",
)


def load_hf_llama(directory: str | os.PathLike, *, scanned: bool = False) -> tuple[LlamaConfig, dict]:
    """Read a Llama / Mistral / Qwen2 directory -> (LlamaConfig, float32 numpy params).

    Unrolled layout by default; `scanned=True` stacks layers under `decoder/layers` in place. Raises
    `CheckpointError` listing every missing, unexpected or mis-shaped tensor, or an unsupported config.
    """
    return hf_tensors.load_hf_directory(directory, LLAMA_FAMILY, scanned=scanned)


def save_hf_llama(config: LlamaConfig, params: Any, directory: str | os.PathLike, *,
                  max_shard_size: int | str | None = None) -> pathlib.Path:
    """Write `params` (any layout, numpy or jax, boxed or not) as an HF `config.hf_model_type` directory (float32
    safetensors, sharded as `save_hf_opt` does). Returns the directory."""
    return hf_tensors.write_hf_checkpoint(directory, config_to_hf_llama(config), tensor_specs_llama(config),
                                          params, max_shard_size=max_shard_size, kind=_KIND)
