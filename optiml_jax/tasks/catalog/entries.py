"""The declarative OPT-IML Bench catalog: collection -> task -> category, read from `optiml_jax/tasks/catalog/*_tasks.tsv`.

Columns: name, collection, category (paper taxonomy), original_category (the collection's own name),
source_dataset (normalized; shared sources are leakage), instruction_type, metric, full_sequence_loss,
reader_key (what the reader needs to find the task's data: NIv2 file stem, FLAN pattern key, PromptSource
dataset key). More TSV files with the same columns add tasks (gin: `load_catalog.extra_files`), e.g. CrossFit.
"""

from __future__ import annotations

import csv
import functools
import pathlib
from typing import Iterable

import gin

from optiml_jax.tasks.metadata import TaskInfo

CATALOG_COLUMNS = ["name", "collection", "category", "original_category", "source_dataset", "instruction_type",
                   "metric", "full_sequence_loss", "reader_key"]
CATALOG_DIR = pathlib.Path(__file__).resolve().parent  # the *_tasks.tsv files ship beside this module



@functools.lru_cache(maxsize=8)
def _read(path: str) -> tuple[tuple[TaskInfo, dict], ...]:
    out = []
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t")
        missing = set(CATALOG_COLUMNS) - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"catalog file {path} lacks columns {sorted(missing)}")
        for line, r in enumerate(reader, start=2):
            try:
                info = TaskInfo(name=r["name"], collection=r["collection"], category=r["category"],
                                instruction_type=r["instruction_type"], metric=r["metric"],
                                full_sequence_loss=r["full_sequence_loss"] == "true",
                                source_dataset=r["source_dataset"])
            except ValueError as e:
                raise ValueError(f"catalog file {path}, line {line}: {e}") from None
            out.append((info, dict(r)))
    return tuple(out)


def catalog_files(catalog_dir: str | pathlib.Path | None = None) -> list[pathlib.Path]:
    d = pathlib.Path(catalog_dir) if catalog_dir else CATALOG_DIR
    files = sorted(d.glob("*_tasks.tsv"))
    if not files:
        raise FileNotFoundError(f"no *_tasks.tsv catalog files in {d} (run python -m optiml_jax.tasks.catalog.build)")
    return files


@gin.configurable
def load_catalog(catalog_dir: str | None = None, extra_files: Iterable[str] = ()) -> list[TaskInfo]:
    """Every catalog task as `TaskInfo`; a name defined twice is an error."""
    tasks, seen = [], {}
    for path in [*catalog_files(catalog_dir), *map(pathlib.Path, extra_files)]:
        for info, _ in _read(str(path)):
            if info.name in seen:
                raise ValueError(f"task {info.name!r} is defined in both {seen[info.name]} and {path}")
            seen[info.name] = path
            tasks.append(info)
    return tasks


def catalog_rows(catalog_dir: str | None = None) -> dict[str, dict]:
    """{name: raw TSV row} (for `reader_key` and `original_category`)."""
    return {info.name: row for p in catalog_files(catalog_dir) for info, row in _read(str(p))}
