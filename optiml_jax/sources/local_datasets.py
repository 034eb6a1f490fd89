"""Rows of a user-supplied local dataset split: JSONL, JSON list, Parquet, CSV/TSV, or a saved Hugging Face
dataset directory (`datasets.load_from_disk`). PromptSource and FLAN templates are applied to these rows."""

from __future__ import annotations

import csv
import json
import pathlib
from typing import Iterator

from optiml_jax.paths import is_url, local_only, open_text, user_path
from optiml_jax.sources.raw_examples import SourceDataError, read_json_file

SPLIT_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv", ".tsv")


def find_split_file(dataset_dir: str | pathlib.Path, split: str) -> pathlib.Path:
    """`<dir>/<split>.{jsonl,json,parquet,csv,tsv}`, or `<dir>` itself when it is a saved HF dataset/DatasetDict."""
    d = user_path(dataset_dir, "local dataset directory")  # local or a bucket (optiml_jax.paths)
    if not d.exists():
        raise SourceDataError(f"local dataset directory does not exist (split {split!r})", file=str(d))
    if d.is_file():
        return d
    for suffix in SPLIT_SUFFIXES:
        if (d / f"{split}{suffix}").is_file():
            return d / f"{split}{suffix}"
    if (d / "dataset_dict.json").is_file() or (d / "dataset_info.json").is_file() or (d / split / "dataset_info.json").is_file():
        return d
    raise SourceDataError(f"no file for split {split!r} ({', '.join(split + s for s in SPLIT_SUFFIXES)} or a saved "
                          f"Hugging Face dataset)", file=str(d))


def iter_rows(path: str | pathlib.Path, split: str = "train") -> Iterator[dict]:
    """Yields dict rows; errors name the file and row."""
    path = user_path(path, "local dataset file")
    if path.is_dir():
        yield from _iter_hf_disk(local_only(path, "local dataset directory", "datasets.load_from_disk"), split)
        return
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        with open_text(path) as f:
            for i, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise SourceDataError(f"bad JSON line: {e}", file=str(path), example=f"line {i}") from None
                if not isinstance(row, dict):
                    raise SourceDataError("JSONL line is not an object", file=str(path), example=f"line {i}")
                yield row
    elif suffix == ".json":
        data = read_json_file(path)
        if isinstance(data, dict) and "data" in data:
            data = data["data"]
        if not isinstance(data, list):
            raise SourceDataError("JSON split file must hold a list of objects (or {'data': [...]})", file=str(path))
        yield from data
    elif suffix == ".parquet":
        import pyarrow.parquet as pq
        for batch in pq.ParquetFile(path.open("rb") if is_url(path) else path).iter_batches(batch_size=1024):
            yield from batch.to_pylist()
    elif suffix in (".csv", ".tsv"):
        with open_text(path) as f:
            yield from csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ",")
    else:
        raise SourceDataError(f"unsupported local dataset format {suffix!r}", file=str(path))


def _iter_hf_disk(path: pathlib.Path, split: str) -> Iterator[dict]:
    import datasets  # lazy: only needed for saved Hugging Face datasets
    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as e:  # noqa: BLE001 - re-raised with the path
        raise SourceDataError(f"datasets.load_from_disk failed: {e}", file=str(path)) from e
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise SourceDataError(f"saved DatasetDict has no split {split!r} (has {list(ds)})", file=str(path))
        ds = ds[split]
    yield from ds
