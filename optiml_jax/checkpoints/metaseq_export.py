"""metaseq checkpoint -> Hugging Face OPT directory without holding the model in memory, plus the tokenizer.

`metaseq_to_hf` writes float32 safetensors shards as they fill (`max_shard_size`, default 5 GB as transformers
does): the peak memory is one shard being filled plus one merged tensor, not the checkpoint, so OPT-175B's 16
parts of ~22 GB convert on a host with far less RAM than the model (perf/RESULTS.md measures the peak RSS).
`copy_tokenizer` puts the OPT tokenizer files next to the weights, where eval/infer/lm-eval look for them.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil

from optiml_jax.checkpoints.hf import (
    DEFAULT_MAX_SHARD_BYTES,
    HF_CONFIG,
    SAFETENSORS,
    SAFETENSORS_INDEX,
    CheckpointError,
    _parse_size,
    config_to_hf,
)
from optiml_jax.checkpoints.metaseq import MetaseqCheckpoint
from optiml_jax.models.config import OPTConfig

TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def metaseq_to_hf(path: str | os.PathLike, directory: str | os.PathLike, *, max_shard_size: int | str | None = None,
                  trust_pickle: bool = False) -> OPTConfig:
    """Write the metaseq checkpoint at `path` as a Hugging Face OPT directory; returns its config."""
    from safetensors.numpy import save_file

    ckpt = MetaseqCheckpoint(path, trust_pickle=trust_pickle)
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    limit = _parse_size(max_shard_size) or DEFAULT_MAX_SHARD_BYTES
    shards: list[list[str]] = []
    current: dict = {}
    size = total = 0

    def flush():
        nonlocal current, size
        if current:
            save_file(current, str(directory / f"shard-{len(shards):05d}.tmp.safetensors"), metadata={"format": "pt"})
            shards.append(list(current))
            current, size = {}, 0

    for hf_key, array in ckpt.iter_hf_tensors():
        if current and size + array.nbytes > limit:
            flush()
        current["model." + hf_key] = array
        size += array.nbytes
        total += array.nbytes
    flush()
    if len(shards) == 1:
        os.replace(directory / "shard-00000.tmp.safetensors", directory / SAFETENSORS)
    else:
        weight_map = {}
        for k, keys in enumerate(shards):
            final = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
            os.replace(directory / f"shard-{k:05d}.tmp.safetensors", directory / final)
            weight_map.update({key: final for key in keys})
        (directory / SAFETENSORS_INDEX).write_text(json.dumps({"metadata": {"total_size": total},
                                                               "weight_map": weight_map}, indent=2, sort_keys=True))
    (directory / HF_CONFIG).write_text(json.dumps(config_to_hf(ckpt.config), indent=2, sort_keys=True))
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
