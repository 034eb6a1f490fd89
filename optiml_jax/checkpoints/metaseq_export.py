"""metaseq checkpoint -> Hugging Face OPT directory or Orbax params, one tensor in memory at a time, plus the tokenizer.

Both writers know every output tensor's shape before reading any (the config is inferred from the parts' shapes),
so they lay the output out first and then fill it tensor by tensor from `MetaseqCheckpoint.hf_tensor` (which
merges one parameter across the memory-mapped parts and hands the parts' pages back):
* `metaseq_to_hf`: float32 safetensors shards (`max_shard_size`, default 5 GB as transformers does); each shard's
  header is written first, then each tensor's bytes as it is merged, so nothing accumulates per shard;
* `metaseq_to_orbax`: the `save_orbax` layout through Orbax itself, from lazily-materialized leaves
  (`orbax_params.save_orbax_streamed`).
The peak memory over the process's baseline is about the largest merged float32 tensor (token embedding or fc1)
plus, for Orbax, Tensorstore's copy of it while it is written; it does not depend on the number or size of the
parts (perf/RESULTS.md measures it). `copy_tokenizer` puts the OPT tokenizer files next to the weights, where
eval/infer/lm-eval look for them.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import shutil
import struct

import numpy as np

from optiml_jax.checkpoints.hf import config_to_hf, tensor_specs
from optiml_jax.checkpoints.hf_tensors import (
    DEFAULT_MAX_SHARD_BYTES,
    HF_CONFIG,
    SAFETENSORS,
    SAFETENSORS_INDEX,
    CheckpointError,
    parse_size,
)
from optiml_jax.checkpoints.metaseq import MetaseqCheckpoint
from optiml_jax.models.config import OPTConfig

TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def metaseq_to_hf(path: str | os.PathLike, directory: str | os.PathLike, *, max_shard_size: int | str | None = None,
                  trust_pickle: bool = False) -> OPTConfig:
    """Write the metaseq checkpoint at `path` as a Hugging Face OPT directory; returns its config."""
    ckpt = MetaseqCheckpoint(path, trust_pickle=trust_pickle)
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    limit = parse_size(max_shard_size) or DEFAULT_MAX_SHARD_BYTES
    shards: list[list[tuple[str, tuple[int, ...]]]] = [[]]
    size = total = 0
    for spec in tensor_specs(ckpt.config):  # the shard plan, from shapes alone
        nbytes = 4 * math.prod(spec.hf_shape)
        if shards[-1] and size + nbytes > limit:
            shards.append([])
            size = 0
        shards[-1].append((spec.hf_key, spec.hf_shape))
        size += nbytes
        total += nbytes
    names = [SAFETENSORS] if len(shards) == 1 else [f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
                                                    for k in range(len(shards))]
    for name, entries in zip(names, shards):
        write_safetensors_streamed(directory / name, [("model." + key, shape) for key, shape in entries],
                                   lambda key: ckpt.hf_tensor(key[len("model."):]))
    if len(shards) > 1:
        weight_map = {"model." + key: name for name, entries in zip(names, shards) for key, _ in entries}
        (directory / SAFETENSORS_INDEX).write_text(json.dumps({"metadata": {"total_size": total},
                                                               "weight_map": weight_map}, indent=2, sort_keys=True))
    (directory / HF_CONFIG).write_text(json.dumps(config_to_hf(ckpt.config), indent=2, sort_keys=True))
    return ckpt.config


def write_safetensors_streamed(path: pathlib.Path, entries: list[tuple[str, tuple[int, ...]]], produce) -> None:
    """A float32 safetensors file whose header (names, shapes, offsets) is written before any tensor exists;
    `produce(name)` is then called once per entry, in order, and its bytes appended (the format: an 8-byte
    little-endian header length, the JSON header padded to 8 bytes, the tensors back to back)."""
    header: dict = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in entries:
        nbytes = 4 * math.prod(shape)
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for name, shape in entries:
            array = np.ascontiguousarray(produce(name), dtype="<f4")
            if array.shape != tuple(shape):
                raise ValueError(f"{path}: {name} came out {list(array.shape)}, its header says {list(shape)}")
            f.write(memoryview(array).cast("B"))
            del array
    os.replace(tmp, path)


def metaseq_to_orbax(path: str | os.PathLike, directory: str | os.PathLike, *,
                     trust_pickle: bool = False) -> OPTConfig:
    """Write the metaseq checkpoint at `path` as an Orbax params directory (`orbax_params` layout, unrolled),
    merging and writing one parameter at a time; returns its config."""
    from optiml_jax.checkpoints.hf_tensors import set_leaf
    from optiml_jax.checkpoints.orbax_params import LazyArray, abstract_params, save_orbax_streamed

    ckpt = MetaseqCheckpoint(path, trust_pickle=trust_pickle)
    shapes = abstract_params(ckpt.config)
    leaves: dict = {}
    for spec in tensor_specs(ckpt.config):
        node = shapes
        for k in spec.path:
            node = node[k]
        set_leaf(leaves, spec.path, LazyArray(tuple(node.shape), np.dtype(np.float32),
                                          lambda spec=spec: spec.to_ours(ckpt.hf_tensor(spec.hf_key))))
    save_orbax_streamed(ckpt.config, leaves, directory)
    return ckpt.config


def check_tokenizer_dir(tokenizer_dir: str | os.PathLike, config: OPTConfig) -> pathlib.Path:
    """The tokenizer directory, refused unless it is an OPT tokenizer (vocab.json + merges.txt, or tokenizer.json)
    whose ids fit the model's embedding."""
    d = pathlib.Path(tokenizer_dir)
    if not ((d / "vocab.json").is_file() and (d / "merges.txt").is_file()) and not (d / "tokenizer.json").is_file():
        raise CheckpointError(d, ["--tokenizer_dir: no vocab.json + merges.txt or tokenizer.json (the OPT "
                                  "tokenizer, e.g. facebook/opt-1.3b's files)"], kind="tokenizer")
    if (d / "vocab.json").is_file():
        try:
            size = len(json.loads((d / "vocab.json").read_text()))
        except (OSError, ValueError) as e:
            raise CheckpointError(d / "vocab.json", [f"unreadable ({e})"], kind="tokenizer") from e
        if size > config.vocab_size:
            raise CheckpointError(d, [f"--tokenizer_dir has {size} tokens but the model's embedding has "
                                      f"{config.vocab_size} rows: not this model's tokenizer"], kind="tokenizer")
    return d


def copy_tokenizer(tokenizer_dir: str | os.PathLike, directory: str | os.PathLike) -> list[str]:
    """Copy the tokenizer files present in `tokenizer_dir` into `directory`; returns their names."""
    copied = []
    for name in TOKENIZER_FILES:
        src = pathlib.Path(tokenizer_dir) / name
        if src.is_file():
            shutil.copyfile(src, pathlib.Path(directory) / name)
            copied.append(name)
    return copied
