"""FLAN held-out evaluation (paper section 5.3): every held-out FLAN task of the split whose local data is
supplied, evaluated with each of its original (non-inverted) templates; the task score is the mean over its
7-10 templates (`EvalTask.template` + `parent_task`).

Layout (the same as `gin/bench/opt_iml_bench.gin`):
  templates_file: flan2021_patterns.json or flan_v2_templates.json ({reader_key: [[input, target], ...]})
  dataset_dir/<task without flan_>/{test,validation,train}.jsonl (or <reader_key>/ when only one task uses it),
  rows carrying the fields the templates format, as FLAN's preprocessors produce them ({premise}, {hypothesis},
  {answer}, and `options` for classification tasks, from which `{options_}` is built).
A row with an `options` list is scored by rank classification over those options (accuracy; FLAN scores
classification tasks this way whether or not the template shows the options); otherwise greedy generation
with Rouge-L. Templates are named t0, t1, ... in the order of the templates file (inverted ones dropped).
A template that fails on a row is an error naming template, task and example (`on_template_error = 'raise'`,
the default) or, with 'drop', left out and reported (one warning with count, names and reasons, and a record in
`optiml_jax.sources.template_failures` for results.json); never a silent drop. A field a template reads that is
NaN (a missing value in the data file) is an error naming template, task, example and field.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import pathlib
from typing import Sequence

import gin

from optiml_jax.sources import template_failures
from optiml_jax.sources.flan_reader import apply_template, load_patterns, original_templates, template_fields
from optiml_jax.sources.raw_examples import SourceDataError, raw_example
from optiml_jax.evaluation.suites import held_out_catalog as hoc
from optiml_jax.evaluation.suites.niv2 import category_slug
from optiml_jax.evaluation.eval_tasks import EvalTask

SUITE = "flan_held_out"
ON_TEMPLATE_ERROR = ("raise", "drop")
DEFAULT_TEMPLATES_FILE = "flan/flan2021_patterns.json"  # relative to DATA_DIR


def render_row(template: tuple[str, str], label: str, row: dict, *, task: str, example_id: str, split: str,
               file: str | None) -> dict:
    """One raw example; errors name the template, task, example and split."""
    where = f"FLAN template {label} ({template[0][:40]!r}...) on task {task}, {split} example {example_id}"
    fields = {f.split(".")[0].split("[")[0] for f in template_fields(template[0]) | template_fields(template[1])}
    nan = template_failures.nan_fields(row, fields | {"options"})
    if nan:
        raise SourceDataError(f"{where}: field(s) {nan} are NaN (a missing value in the data file?), which would be "
                              "rendered as 'nan'; fix or drop the row", file=file, task=task, example=example_id)
    try:
        prompt, target = apply_template(*template, row, task=task, example=example_id, file=file)
    except SourceDataError as e:
        raise SourceDataError(f"{where} failed: {e}", file=file, task=task, example=example_id) from e
    options = row.get("options")
    if options is not None and not (isinstance(options, list) and options):
        raise SourceDataError(f"{where}: 'options' must be a non-empty list, got {options!r}", file=file, task=task,
                              example=example_id)
    options = [str(o) for o in options or []]
    if options and target not in options:
        raise SourceDataError(f"{where}: target {target!r} is not one of the row's options {options}", file=file,
                              task=task, example=example_id)
    return raw_example(input=prompt, target=target, options=options, id=f"{task}-{split}-{example_id}")


def template_tasks(task: hoc.HeldOutTask, patterns: Sequence[tuple[str, str]], eval_rows: Sequence[dict],
                   eval_split: str, train_rows: Sequence[dict], file: str | None = None, *,
                   on_template_error: str = "raise", failures: list | None = None) -> list[EvalTask]:
    """One EvalTask per original template of one FLAN dataset; with `on_template_error='drop'` a template that
    fails on any row is left out and appended to `failures` (a `TemplateFailure`)."""
    if on_template_error not in ON_TEMPLATE_ERROR:
        raise ValueError(f"on_template_error={on_template_error!r}: expected one of {ON_TEMPLATE_ERROR}")
    name = task.info.name
    out = []
    for k, template in enumerate(original_templates(list(patterns))):
        label = f"t{k}"
        rendered, errors = hoc.render_rows(
            lambda r, example_id, split: render_row(template, label, r, task=name, example_id=example_id,
                                                    split=split, file=file),
            ((eval_split, eval_rows), ("train", train_rows)), on_template_error)
        if errors:
            failures = failures if failures is not None else []
            failures.append(template_failures.TemplateFailure(
                source=SUITE, task=name, template=label, template_id=f"{template[0][:40]}...",
                failed_examples=len(errors), examples=len(eval_rows) + len(train_rows), first_example=errors[0][0],
                reason=str(errors[0][1])))
            continue
        examples, demos = rendered[eval_split], rendered["train"]
        with_options = sum(bool(ex["options"]) for ex in examples)
        if 0 < with_options < len(examples):
            raise SourceDataError(f"{with_options} of {len(examples)} {eval_split} rows have 'options': a task is "
                                  "either classification (all rows) or generation (none)", task=name, file=file)
        info = dataclasses.replace(task.info, category=category_slug(task.info.category),
                                   metric="accuracy" if with_options else "rouge_l")
        out.append(EvalTask(info=info, examples=examples, demonstrations=demos, level=task.level, template=label,
                            parent_task=name, collection="flan"))
    if not out and not (failures and failures[-1].task == name):
        raise SourceDataError("dataset has no FLAN templates", file=file, task=name)
    return out


def _resolve(templates_file, dataset_dir, default_root) -> tuple[pathlib.Path, pathlib.Path]:
    root = pathlib.Path(default_root) if default_root is not None else None
    if templates_file is None and root is not None:
        templates_file = root / DEFAULT_TEMPLATES_FILE
    if dataset_dir is None and root is not None:
        dataset_dir = root / "flan"
    if templates_file is None or dataset_dir is None:
        raise ValueError(f"suite {SUITE!r}: set FLAN_TEMPLATES_FILE and FLAN_DATA_DIR (or DATA_DIR with "
                         f"DATA_DIR/{DEFAULT_TEMPLATES_FILE} and DATA_DIR/flan/<task>/validation.jsonl)")
    if not pathlib.Path(dataset_dir).is_dir():
        raise FileNotFoundError(f"suite {SUITE!r}: {dataset_dir} is not a directory (set FLAN_DATA_DIR)")
    return pathlib.Path(templates_file), pathlib.Path(dataset_dir)


@gin.configurable
def flan_held_out_tasks(templates_file: str | os.PathLike | None = None,
                        dataset_dir: str | os.PathLike | None = None, *,
                        split_name: str = "opt_iml_paper", levels: Sequence[str] = hoc.HELD_OUT_LEVELS,
                        eval_splits: Sequence[str] = hoc.EVAL_SPLITS, max_examples: int | None = None,
                        max_demonstrations: int = hoc.MAX_DEMONSTRATION_ROWS,
                        default_root: str | os.PathLike | None = None,
                        on_template_error: str = "raise") -> list[EvalTask]:
    """EvalTasks of every held-out FLAN task (per `split_name`, at `levels`) with data in `dataset_dir`.

    Defaults from `default_root` (DATA_DIR): DATA_DIR/flan/flan2021_patterns.json and DATA_DIR/flan/<task>/.
    Raises when no held-out task has data at all. `on_template_error`: 'raise' (default) or 'drop' (reported;
    see the module docstring).
    """
    templates_file, dataset_dir = _resolve(templates_file, dataset_dir, default_root)
    patterns = load_patterns(templates_file)
    tasks = hoc.held_out_tasks("flan", split_name, levels)
    key_uses = collections.Counter(t.reader_key for t in tasks)
    out, skipped, failures = [], [], []
    for task in tasks:
        candidates = [dataset_dir / task.info.name.removeprefix("flan_")]
        if key_uses[task.reader_key] == 1:
            candidates.append(dataset_dir / task.reader_key)
        data = next((d for d in candidates if d.exists() and hoc.available_splits(d, [*eval_splits, "train"])), None)
        if data is None:
            hoc.skip_missing(SUITE, task, candidates[0])
            skipped.append(task.info.name)
            continue
        if task.reader_key not in patterns:
            raise SourceDataError(f"the FLAN templates file has no patterns for {task.reader_key!r}",
                                  file=str(templates_file), task=task.info.name)
        eval_split, rows = hoc.evaluation_rows(data, task.info.name, eval_splits, max_examples)
        out.extend(template_tasks(task, patterns[task.reader_key], rows, eval_split,
                                  hoc.demonstration_rows(data, max_demonstrations), file=str(data),
                                  on_template_error=on_template_error, failures=failures))
    return hoc.finish_suite(SUITE, "FLAN", out, skipped, failures, dataset_dir,
                            "<FLAN_DATA_DIR>/<task without flan_>/validation.jsonl, e.g. rte/validation.jsonl")
