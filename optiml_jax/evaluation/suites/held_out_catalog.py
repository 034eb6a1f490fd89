"""What the PromptSource and FLAN held-out suites share: which catalog tasks a split holds out (with their level
and `reader_key`), which local split file holds the evaluation instances, and the bounded reading of rows.

Why here rather than in each suite: both collections are "templates applied to user-supplied dataset files",
and the held-out task list must come from the catalog + split (never a hard-coded list), the same way for both.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import pathlib
from typing import Sequence

from optiml_jax.sources import template_failures
from optiml_jax.sources.local_datasets import find_split_file, iter_rows
from optiml_jax.sources.raw_examples import SourceDataError
from optiml_jax.tasks.metadata import TaskInfo

log = logging.getLogger(__name__)

HELD_OUT_LEVELS = ("fully_held_out", "partially_supervised")
# Evaluation instances: the test split when the local folder has one, else validation (paper: original splits).
EVAL_SPLITS = ("test", "validation")
# Demonstration pool: the first rows of the train split (k-shot draws from these; reading a 400k-row train file
# and rendering it with every template would dominate evaluation time for no gain).
MAX_DEMONSTRATION_ROWS = 1000


@dataclasses.dataclass(frozen=True)
class HeldOutTask:
    info: TaskInfo
    level: str
    reader_key: str


def held_out_tasks(collection: str, split_name: str = "opt_iml_paper",
                   levels: Sequence[str] = HELD_OUT_LEVELS) -> list[HeldOutTask]:
    """The catalog tasks of `collection` that `split_name` evaluates at one of `levels`, in catalog order."""
    from optiml_jax.tasks.catalog.entries import catalog_rows, load_catalog
    from optiml_jax.tasks.catalog.splits import get_split

    catalog = load_catalog()
    rows = catalog_rows()
    split = get_split(split_name, catalog)
    out = []
    for info, level in split.evaluation_tasks(catalog):
        if info.collection != collection or level not in levels:
            continue
        key = (rows.get(info.name) or {}).get("reader_key") or info.name.split("_", 1)[1]
        out.append(HeldOutTask(info=info, level=level, reader_key=key))
    return out


def available_splits(dataset_dir: pathlib.Path, names: Sequence[str]) -> list[str]:
    found = []
    for s in names:
        try:
            find_split_file(dataset_dir, s)
        except SourceDataError:
            continue
        found.append(s)
    return found


def choose_eval_split(dataset_dir: pathlib.Path, task: str, eval_splits: Sequence[str] = EVAL_SPLITS) -> str:
    """The first of `eval_splits` present in `dataset_dir`; a clear error when none is."""
    found = available_splits(dataset_dir, eval_splits)
    if not found:
        raise SourceDataError(f"no evaluation split file: expected one of {list(eval_splits)} "
                              "(.jsonl, .json, .parquet, .csv, .tsv or a saved Hugging Face dataset)",
                              file=str(dataset_dir), task=task)
    return found[0]


def read_split_rows(dataset_dir: pathlib.Path, split: str, limit: int | None) -> list[dict]:
    path = find_split_file(dataset_dir, split)
    return list(itertools.islice(iter_rows(path, split), limit))


def demonstration_rows(dataset_dir: pathlib.Path, limit: int = MAX_DEMONSTRATION_ROWS) -> list[dict]:
    """The first `limit` train rows, or [] when the folder has no train split (k-shot then falls back to 0)."""
    dataset_dict = dataset_dir / "dataset_dict.json"
    if dataset_dict.is_file():  # a saved Hugging Face DatasetDict lists its splits
        try:
            has_train = "train" in json.loads(dataset_dict.read_text())["splits"]
        except (ValueError, KeyError) as e:
            raise SourceDataError(f"unreadable dataset_dict.json: {e}", file=str(dataset_dict)) from None
    elif (dataset_dir / "dataset_info.json").is_file():
        has_train = False  # a saved single-split dataset is the evaluation split itself, not a demonstration pool
    else:
        has_train = bool(available_splits(dataset_dir, ["train"]))
    return read_split_rows(dataset_dir, "train", limit) if has_train else []


def row_id(row: dict, index: int) -> str:
    """The dataset's own id (`id` / `idx`), else the row index."""
    for k in ("id", "idx"):
        if k in row and row[k] is not None:
            return str(row[k])
    return str(index)


def render_rows(render, splits, on_template_error: str) -> tuple[dict[str, list], list[tuple[str, Exception]]]:
    """Each `(split, rows)` rendered by `render(row, example_id, split)`: {split: rendered rows}, and the failed
    rows as ("<split> example <id>", error) when `on_template_error` is 'drop' ('raise' raises the first)."""
    rendered, errors = {}, []
    for split, rows in splits:
        rendered[split] = []
        for i, r in enumerate(rows):
            try:
                rendered[split].append(render(r, row_id(r, i), split))
            except SourceDataError as e:
                if on_template_error == "raise":
                    raise
                errors.append((f"{split} example {row_id(r, i)}", e))
    return rendered, errors


def skip_missing(suite: str, task: HeldOutTask, where: pathlib.Path) -> None:
    log.info("%s: skipping %s (%s, %s): no local data at %s", suite, task.info.name, task.level,
                task.info.category, where)


def log_skipped(suite: str, skipped: Sequence[str], built: int) -> None:
    """One summary line: which held-out tasks had no local data (each is also logged at INFO with its path)."""
    if skipped:
        log.warning("%s: %d held-out task(s) evaluated, %d skipped for lack of local data: %s", suite, built,
                    len(skipped), ", ".join(skipped))


def evaluation_rows(dataset_dir: pathlib.Path, task: str, eval_splits: Sequence[str],
                    max_examples: int | None) -> tuple[str, list[dict]]:
    """The evaluation split of `dataset_dir` (`choose_eval_split`) and its first `max_examples` rows; an empty
    split is an error naming the folder and the task."""
    split = choose_eval_split(dataset_dir, task, eval_splits)
    rows = read_split_rows(dataset_dir, split, max_examples)
    if not rows:
        raise SourceDataError(f"the {split} split has no rows", file=str(dataset_dir), task=task)
    return split, rows


def finish_suite(suite: str, collection: str, built: list, skipped: Sequence[str], failures: list,
                 dataset_dir: pathlib.Path, expected_layout: str) -> list:
    """Log what was skipped and which templates failed; a suite that built nothing is an error saying why (every
    template failed, or no held-out task had local data: `expected_layout` says where the files go)."""
    log_skipped(suite, skipped, len({t.name for t in built}))
    template_failures.report(suite, failures)
    if not built and failures:
        raise SourceDataError(f"suite {suite!r}: every template failed to render ({template_failures.summary(failures)})",
                              file=str(dataset_dir))
    if not built:
        raise SourceDataError(f"suite {suite!r}: none of the {len(skipped)} held-out {collection} tasks has local "
                              f"data (expected {expected_layout})", file=str(dataset_dir))
    return built
