"""Hugging Face OPT checkpoints <-> optiml_jax parameters, streamed one tensor at a time (`hf_tensors`).

`load_hf_opt(directory)` reads a directory as `transformers` writes it (`config.json` plus
`model.safetensors`, `pytorch_model.bin`, or their sharded forms with a `*.index.json`) and returns
`(OPTConfig, params)` with params as float32 numpy arrays in the unrolled layout (`decoder/layers_{i}`),
or stacked (`decoder/layers`) with `scanned=True`. `save_hf_opt(config, params, directory)` writes a
directory that `transformers.OPTForCausalLM.from_pretrained` loads.

This module says what is OPT's: its `config.json` fields and its tensor map (`OPT_FAMILY`); the files, the
reader loop and the sharded writer are every family's (`optiml_jax.checkpoints.hf_tensors`).

Name mapping (HF keys may carry a `model.` prefix, as `OPTForCausalLM` saves them, or not, as the
original `facebook/opt-*` checkpoints do; `lm_head.weight` is the tied token embedding and is
dropped after checking it equals `embed_tokens`):

| HF (`[model.]decoder.` ...)              | optiml_jax (`decoder/` ...)                  | transform |
|------------------------------------------|----------------------------------------------|-----------|
| `embed_tokens.weight` [V, E]             | `embed_tokens/embedding` [V, E]              | copy |
| `embed_positions.weight` [P+2, H]        | `embed_positions/embedding`                  | copy |
| `project_in.weight` [H, E]               | `project_in/kernel` [E, H]                   | transpose |
| `project_out.weight` [E, H]              | `project_out/kernel` [H, E]                  | transpose |
| `final_layer_norm.{weight,bias}`         | `final_layer_norm/ln/{scale,bias}`           | copy |
| `layers.i.self_attn.{q,k,v}_proj.weight` | `layers_i/self_attn/{q,k,v}_proj/kernel` [H, heads, head_dim] | transpose + reshape |
| `layers.i.self_attn.{q,k,v}_proj.bias`   | `.../bias` [heads, head_dim]                 | reshape |
| `layers.i.self_attn.out_proj.weight`     | `layers_i/self_attn/out_proj/kernel` [heads, head_dim, H] | transpose + reshape |
| `layers.i.fc1.weight` / `fc2.weight`     | `layers_i/fc1/kernel` [H, F] / `fc2/kernel` [F, H] | transpose |
| `layers.i.{self_attn_layer_norm,final_layer_norm}.{weight,bias}` | `layers_i/.../ln/{scale,bias}` | copy |

Every transform is a transpose/reshape, so HF -> optiml_jax -> HF is bit-identical.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

from optiml_jax.checkpoints.hf_tensors import (
    CheckpointError,
    HFFamily,
    TensorSpec,
    as_is,
    load_hf_directory,
    transposed,
    write_hf_checkpoint,
)
from optiml_jax.models.config import POSITION_OFFSET, OPTConfig

_HF_LAYER_NORM_EPS = 1e-5  # torch.nn.LayerNorm default; HF's OPTConfig has no field for it


# ----------------------------------------------------------------------------------------------- config


def config_from_hf(hf: dict[str, Any], where: str = "config.json") -> OPTConfig:
    """Our OPTConfig from a Hugging Face OPT `config.json` dict (HF defaults for absent optional fields)."""
    problems = []
    if hf.get("model_type") != "opt":
        problems.append(f"model_type is {hf.get('model_type')!r}, expected 'opt'")
    required = ("hidden_size", "num_hidden_layers", "num_attention_heads", "ffn_dim", "vocab_size")
    problems += [f"missing required field {name!r}" for name in required if name not in hf]
    activation = hf.get("activation_function", "relu")
    if activation != "relu":
        problems.append(f"activation_function is {activation!r}; only relu OPT models are supported")
    if hf.get("do_layer_norm_before", True) and hf.get("_remove_final_layer_norm", False):
        problems.append("_remove_final_layer_norm=True with do_layer_norm_before=True is not supported")
    if problems:
        raise CheckpointError(where, problems)
    hidden = hf["hidden_size"]
    proj = hf.get("word_embed_proj_dim") or hidden
    try:
        return OPTConfig(
            hidden_size=hidden,
            num_layers=hf["num_hidden_layers"],
            num_heads=hf["num_attention_heads"],
            ffn_dim=hf["ffn_dim"],
            vocab_size=hf["vocab_size"],
            max_position_embeddings=hf.get("max_position_embeddings", 2048),
            word_embed_proj_dim=None if proj == hidden else proj,
            do_layer_norm_before=hf.get("do_layer_norm_before", True),
            enable_bias=hf.get("enable_bias", True),
            layer_norm_elementwise_affine=hf.get("layer_norm_elementwise_affine", True),
            dropout_rate=hf.get("dropout", 0.1),
            attention_dropout_rate=hf.get("attention_dropout", 0.0),
            init_std=hf.get("init_std", 0.02),
            # the file's ids; one it lacks stays None (unknown: the run's vocabulary gives it, or its use fails)
            pad_token_id=hf.get("pad_token_id"),
            bos_token_id=hf.get("bos_token_id"),
            eos_token_id=hf.get("eos_token_id"),
        )
    except ValueError as e:
        raise CheckpointError(where, [str(e)]) from e


def config_to_hf(config: OPTConfig) -> dict[str, Any]:
    """The `config.json` dict `transformers.OPTConfig` reads for this model."""
    if config.layer_norm_eps != _HF_LAYER_NORM_EPS:
        raise CheckpointError("OPTConfig", [f"layer_norm_eps={config.layer_norm_eps}: Hugging Face OPT fixes 1e-5"])
    return {
        "architectures": ["OPTForCausalLM"],
        "model_type": "opt",
        "activation_function": "relu",
        "hidden_size": config.hidden_size,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "ffn_dim": config.ffn_dim,
        "vocab_size": config.vocab_size,
        "max_position_embeddings": config.max_position_embeddings,
        "word_embed_proj_dim": config.embed_dim,
        "do_layer_norm_before": config.do_layer_norm_before,
        "_remove_final_layer_norm": False,
        "enable_bias": config.enable_bias,
        "layer_norm_elementwise_affine": config.layer_norm_elementwise_affine,
        "dropout": config.dropout_rate,
        "attention_dropout": config.attention_dropout_rate,
        "layerdrop": 0.0,
        "init_std": config.init_std,
        "pad_token_id": config.pad_token_id,
        "bos_token_id": config.bos_token_id,
        "eos_token_id": config.eos_token_id,
        "tie_word_embeddings": True,
        "use_cache": True,
        "torch_dtype": "float32",
    }


# ------------------------------------------------------------------------------------ tensor mapping


def tensor_specs(config: OPTConfig) -> list[TensorSpec]:
    """Every tensor of an HF OPT checkpoint for `config`, in the order HF's state_dict lists them."""
    h, e, f, v = config.hidden_size, config.embed_dim, config.ffn_dim, config.vocab_size
    nh, hd = config.num_heads, config.head_dim
    specs = [
        TensorSpec("decoder.embed_tokens.weight", ("decoder", "embed_tokens", "embedding"), (v, e), as_is, as_is),
        TensorSpec("decoder.embed_positions.weight", ("decoder", "embed_positions", "embedding"),
                   (config.max_position_embeddings + POSITION_OFFSET, h), as_is, as_is),
    ]

    def layer_norm(hf_prefix, path, layer=None):
        if not config.layer_norm_elementwise_affine:
            return []
        return [TensorSpec(f"{hf_prefix}.weight", (*path, "ln", "scale"), (h,), as_is, as_is, layer),
                TensorSpec(f"{hf_prefix}.bias", (*path, "ln", "bias"), (h,), as_is, as_is, layer)]

    if config.do_layer_norm_before:
        specs += layer_norm("decoder.final_layer_norm", ("decoder", "final_layer_norm"))
    if config.has_projections:
        specs += [
            TensorSpec("decoder.project_out.weight", ("decoder", "project_out", "kernel"), (e, h), transposed, transposed),
            TensorSpec("decoder.project_in.weight", ("decoder", "project_in", "kernel"), (h, e), transposed, transposed),
        ]
    qkv_to_ours = lambda w: w.T.reshape(h, nh, hd)  # noqa: E731
    qkv_to_hf = lambda k: k.reshape(h, h).T  # noqa: E731
    out_to_ours = lambda w: w.T.reshape(nh, hd, h)  # noqa: E731
    out_to_hf = lambda k: k.reshape(h, h).T  # noqa: E731
    head_bias_to_ours = lambda b: b.reshape(nh, hd)  # noqa: E731
    head_bias_to_hf = lambda b: b.reshape(h)  # noqa: E731
    for i in range(config.num_layers):
        hf, ours = f"decoder.layers.{i}", ("decoder", f"layers_{i}")
        for name in ("k_proj", "v_proj", "q_proj"):
            specs.append(TensorSpec(f"{hf}.self_attn.{name}.weight", (*ours, "self_attn", name, "kernel"), (h, h),
                                    qkv_to_ours, qkv_to_hf, i))
            if config.enable_bias:
                specs.append(TensorSpec(f"{hf}.self_attn.{name}.bias", (*ours, "self_attn", name, "bias"), (h,),
                                        head_bias_to_ours, head_bias_to_hf, i))
        specs.append(TensorSpec(f"{hf}.self_attn.out_proj.weight", (*ours, "self_attn", "out_proj", "kernel"), (h, h),
                                out_to_ours, out_to_hf, i))
        if config.enable_bias:
            specs.append(TensorSpec(f"{hf}.self_attn.out_proj.bias", (*ours, "self_attn", "out_proj", "bias"), (h,),
                                    as_is, as_is, i))
        specs += layer_norm(f"{hf}.self_attn_layer_norm", (*ours, "self_attn_layer_norm"), i)
        for name, shape in (("fc1", (f, h)), ("fc2", (h, f))):
            specs.append(TensorSpec(f"{hf}.{name}.weight", (*ours, name, "kernel"), shape, transposed, transposed, i))
            if config.enable_bias:
                specs.append(TensorSpec(f"{hf}.{name}.bias", (*ours, name, "bias"), (shape[0],), as_is, as_is, i))
        specs += layer_norm(f"{hf}.final_layer_norm", (*ours, "final_layer_norm"), i)
    return specs


# ---------------------------------------------------------------------------------------- load / save


def _strip_model_prefix(key: str) -> str:
    return key[len("model."):] if key.startswith("model.") else key


OPT_FAMILY = HFFamily(
    kind="OPT", config_from_hf=config_from_hf, tensor_specs=tensor_specs, spec_key=_strip_model_prefix,
    may_tie=lambda config: True,  # OPT always ties: a stored lm_head.weight must equal the embedding
    unexpected_note="not part of an OPT model with this config",
    untied_head_problem="lm_head.weight differs from decoder.embed_tokens.weight: OPT ties them, and untied heads "
                        "are not supported",
)


def load_hf_opt(directory: str | os.PathLike, *, scanned: bool = False) -> tuple[OPTConfig, dict]:
    """Read a Hugging Face OPT directory -> (OPTConfig, float32 numpy params).

    Unrolled layout (`decoder/layers_{i}`) by default; `scanned=True` returns `decoder/layers` with a
    leading layer axis, filled in place (no second copy). Raises `CheckpointError` listing every
    missing, unexpected or mis-shaped tensor, or a config that is not OPT.
    """
    return load_hf_directory(directory, OPT_FAMILY, scanned=scanned)


def save_hf_opt(config: OPTConfig, params: Any, directory: str | os.PathLike, *,
                max_shard_size: int | str | None = None) -> pathlib.Path:
    """Write `params` (unrolled or scanned, numpy or jax, boxed or not) as an HF OPT directory.

    float32 safetensors; models over 5 GB are always sharded (a single file is built in memory). With
    `max_shard_size` (bytes, or '2GB'-style) tensors go into `model-0000k-of-0000n.safetensors` shards plus
    `model.safetensors.index.json`, each shard written as soon as it is full. Returns the directory.
    """
    return write_hf_checkpoint(directory, config_to_hf(config), tensor_specs(config), params,
                               max_shard_size=max_shard_size, key_prefix="model.")
