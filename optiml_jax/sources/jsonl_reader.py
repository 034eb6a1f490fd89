"""Generic sources so any other collection (CrossFit, ExMix, T5, UnifiedSKG, dialogue, pre-training text) is added
from gin without code: metaseq's fine-tuning JSONL (`{"src": ..., "tgt": ...}`) and a TFDS dataset with named
source/target features. An optional keyword instruction (paper section 2.2: one hand-written sentence per
keyword-prompted task) becomes the instance-level instruction."""

from __future__ import annotations

import pathlib
from typing import Iterator

from optiml_jax.paths import user_path
from optiml_jax.sources.local_datasets import iter_rows
from optiml_jax.sources.raw_examples import SourceDataError, raw_example


def read_src_tgt_jsonl(path: str | pathlib.Path, *, task: str, instruction: str = "",
                       src_key: str = "src", tgt_key: str = "tgt") -> Iterator[dict]:
    """metaseq JSONL rows -> raw examples; an empty `src` is allowed (full-sequence LM data)."""
    path = user_path(path, "JSONL file")
    if not path.is_file():
        raise SourceDataError("JSONL file does not exist", file=str(path), task=task)
    n = 0
    for i, row in enumerate(iter_rows(path), start=1):
        if tgt_key not in row or not isinstance(row[tgt_key], str) or not isinstance(row.get(src_key, ""), str):
            raise SourceDataError(f"row needs string fields {src_key!r} and {tgt_key!r}", file=str(path), task=task,
                                  example=f"line {i}")
        n += 1
        yield raw_example(instruction=instruction, input=row.get(src_key, ""), target=row[tgt_key],
                          id=str(row.get("id", f"{task}-{i}")))
    if n == 0:
        raise SourceDataError("JSONL file has no examples", file=str(path), task=task)


def read_tfds(name: str, *, task: str, split: str = "train", data_dir: str | None = None, source_key: str = "inputs",
              target_key: str = "targets", instruction: str = "") -> Iterator[dict]:
    """A TFDS dataset (already prepared under `data_dir`; no download) -> raw examples."""
    import tensorflow_datasets as tfds  # lazy: TF only when a TFDS source is used
    try:
        ds = tfds.load(name, split=split, data_dir=data_dir, download=False)
    except Exception as e:  # noqa: BLE001
        raise SourceDataError(f"tfds.load({name!r}, split={split!r}) failed: {e}", file=str(data_dir), task=task) from e
    for i, ex in enumerate(tfds.as_numpy(ds)):
        if target_key not in ex:
            raise SourceDataError(f"TFDS example lacks feature {target_key!r}", file=name, task=task, example=str(i))

        def text(v):
            return v.decode("utf-8") if isinstance(v, bytes) else str(v)
        yield raw_example(instruction=instruction, input=text(ex.get(source_key, b"")), target=text(ex[target_key]),
                          id=f"{task}-{i}")
