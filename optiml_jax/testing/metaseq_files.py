"""Write metaseq-format checkpoints from a Hugging Face OPT state dict, laid out as metaseq lays them out, for tests
of the metaseq importer (optiml_jax/checkpoints/metaseq.py) without any released weights.

The layout inverts metaseq's `reshard_megatron_parts`: column-parallel tensors (embed_tokens, fc1, k/v/q_proj) are
chunked on dim 0, row-parallel weights (fc2, out_proj) on dim 1, everything else is replicated; with `fused=True`
each part holds `self_attn.qkv_proj` = cat(K_part, V_part, Q_part) (metaseq's K, V, Q order). Keys take metaseq's
names (`decoder.layer_norm`, `project_in_dim`, `output_projection`, `decoder.version`), and `cfg` holds the
model section as an `argparse.Namespace` (as fairseq/metaseq legacy model configs are), `common.model_parallel_size`.
"""

from __future__ import annotations

import argparse
import os
import pathlib
from typing import Any


def _metaseq_key(hf_key: str) -> str | None:
    key = hf_key[len("model."):] if hf_key.startswith("model.") else hf_key
    if key == "lm_head.weight":
        return None
    return {"decoder.final_layer_norm.weight": "decoder.layer_norm.weight",
            "decoder.final_layer_norm.bias": "decoder.layer_norm.bias",
            "decoder.project_in.weight": "decoder.project_in_dim.weight",
            "decoder.project_out.weight": "decoder.project_out_dim.weight"}.get(key, key)


def metaseq_parts(hf_state: dict, num_parts: int, *, fused: bool = True, dtype: Any = None) -> list[dict]:
    """The `model` dict of each of `num_parts` model-parallel parts (1 = a consolidated file)."""
    import torch

    dtype = dtype or torch.float16
    parts: list[dict] = [{} for _ in range(num_parts)]
    qkv: dict[str, dict[str, list]] = {}
    for hf_key, value in hf_state.items():
        key = _metaseq_key(hf_key)
        if key is None:
            continue
        value = value.detach().to(dtype).contiguous()
        if any(f".self_attn.{n}." in key for n in ("k_proj", "v_proj", "q_proj")) and fused:
            name = key.split(".self_attn.")[1].split(".")[0]
            fused_key = key.replace(f".{name}.", ".qkv_proj.")
            qkv.setdefault(fused_key, {})[name] = list(torch.chunk(value, num_parts, dim=0))
            continue
        if key == "decoder.embed_tokens.weight" or ".fc1." in key or any(f".{n}." in key for n in ("k_proj", "v_proj", "q_proj")):
            chunks = torch.chunk(value, num_parts, dim=0)
        elif key.endswith(("fc2.weight", "out_proj.weight")):
            chunks = torch.chunk(value, num_parts, dim=1)
        else:
            chunks = [value] * num_parts
        for part, chunk in zip(parts, chunks):
            part[key] = chunk.clone()
    for fused_key, pieces in qkv.items():
        for i, part in enumerate(parts):
            part[fused_key] = torch.cat([pieces["k_proj"][i], pieces["v_proj"][i], pieces["q_proj"][i]], dim=0)
    for part in parts:
        part["decoder.output_projection.weight"] = part["decoder.embed_tokens.weight"]  # tied, same storage
        part["decoder.version"] = torch.tensor([3.0])
    return parts


def metaseq_cfg(config: Any, num_parts: int) -> dict:
    """A metaseq `cfg` for an OPTConfig: the model section as a Namespace, `common.model_parallel_size`."""
    model = argparse.Namespace(
        _name="transformer_lm_megatron", decoder_layers=config.num_layers, decoder_embed_dim=config.hidden_size,
        decoder_ffn_embed_dim=config.ffn_dim, decoder_attention_heads=config.num_heads,
        decoder_input_dim=config.embed_dim, decoder_output_dim=config.embed_dim,
        decoder_normalize_before=config.do_layer_norm_before, activation_fn="relu", decoder_learned_pos=True,
        no_scale_embedding=True, share_decoder_input_output_embed=True,
        max_target_positions=config.max_position_embeddings)
    return {"_name": None, "common": {"model_parallel_size": num_parts, "fp16": True}, "model": model,
            "task": {"_name": "streaming_language_modeling"}}


def write_metaseq_checkpoint(hf_state: dict, config: Any, directory: str | os.PathLike, *, num_parts: int = 1,
                             name: str = "checkpoint_last", fused: bool = True, dtype: Any = None,
                             num_updates: int = 4000, cfg: Any = None) -> list[pathlib.Path]:
    """Write `name.pt` (num_parts=1) or `name.pt-model_part-{i}.pt` (the OPT-IML release naming) into
    `directory`; returns the files in part order."""
    import torch

    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cfg = metaseq_cfg(config, num_parts) if cfg is None else cfg
    files = []
    for i, model in enumerate(metaseq_parts(hf_state, num_parts, fused=fused, dtype=dtype)):
        f = directory / (f"{name}.pt" if num_parts == 1 else f"{name}.pt-model_part-{i}.pt")
        torch.save({"model": model, "cfg": cfg, "args": None, "criterion": None,
                    "optimizer_history": [{"criterion_name": "VocabParallelCrossEntropyCriterion",
                                           "optimizer_name": "MemoryEfficientFP16Optimizer",
                                           "lr_scheduler_state": {"best": None}, "num_updates": num_updates}],
                    "extra_state": {"train_iterator": {"epoch": 1, "iterations_in_epoch": num_updates},
                                    "previous_training_time": 12.5}}, f)
        files.append(f)
    return files
