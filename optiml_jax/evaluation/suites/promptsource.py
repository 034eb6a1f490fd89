"""PromptSource held-out evaluation (paper section 5.2, T0's protocol): every held-out PromptSource task of the
split whose local data is supplied, evaluated with each of its original-task templates; the task score is the
mean over its templates (`EvalTask.template` + `parent_task`, see `optiml_jax.evaluation.aggregation`).

Layout (the same as `gin/bench/opt_iml_bench.gin`):
  templates_dir/<reader_key>/templates.yaml            e.g. promptsource/super_glue/cb/templates.yaml
  dataset_dir/<reader_key>/{test,validation,train}.{jsonl,json,parquet,csv,tsv} (or a saved HF dataset)
The evaluation instances are the test split when present, else validation; demonstrations (k-shot, placed
before the example: instance-level instructions) are the same template applied to the first train rows.
A template with `answer_choices` is scored by rank classification over the rendered choices (accuracy);
one without is generated and scored with Rouge-L. Tasks without local data are skipped with a logged
message. A template that fails on a row is an error naming template, task and example (`on_template_error =
'raise'`, the default), or, with 'drop' (the paper drops templates that do not apply to every example), the
template is left out and reported: one warning with the count, names and reasons, and a record in
`optiml_jax.sources.template_failures` (for results.json). Never a silent drop. A field the template reads that
is NaN (a missing value in the data file) is an error naming template, task, example and field.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Sequence

import gin

from optiml_jax.sources import template_failures
from optiml_jax.sources.promptsource_templates import PSTemplate, TemplateRenderer, load_templates_file
from optiml_jax.sources.raw_examples import SourceDataError, raw_example
from optiml_jax.evaluation.suites import held_out_catalog as hoc
from optiml_jax.evaluation.suites.niv2 import category_slug
from optiml_jax.evaluation.eval_tasks import EvalTask

SUITE = "promptsource_held_out"
ON_TEMPLATE_ERROR = ("raise", "drop")


def template_variables(template: PSTemplate) -> set[str]:
    """The example fields a template (and its answer_choices) reads."""
    import jinja2
    from jinja2 import meta

    env = jinja2.Environment()
    names: set[str] = set()
    for source in (template.jinja, template.answer_choices):
        if source:
            try:
                names |= meta.find_undeclared_variables(env.parse(source))
            except jinja2.TemplateSyntaxError:
                pass  # rendering reports it, with the template's name
    return names - {"answer_choices"}


def render_row(renderer: TemplateRenderer, template: PSTemplate, row: dict, *, task: str, example_id: str,
               split: str) -> dict:
    """One raw example; any rendering problem (or a target outside the answer choices) names template, task,
    example and split."""
    where = f"PromptSource template {template.name!r} (id {template.id}) on task {task}, {split} example {example_id}"
    nan = template_failures.nan_fields(row, template_variables(template))
    if nan:
        raise SourceDataError(f"{where}: field(s) {nan} are NaN (a missing value in the data file?), which would be "
                              "rendered as 'nan'; fix or drop the row", file=template.file, task=task,
                              example=example_id)
    try:
        prompt, target, choices = renderer.apply(template, row)
    except SourceDataError as e:
        hint = ""
        if split == "test" and "no target" in str(e):
            hint = (" (hidden test labels? evaluate on validation: "
                    "promptsource_held_out_tasks.eval_splits = ['validation'])")
        raise SourceDataError(f"{where} failed: {e}{hint}", file=template.file, task=task, example=example_id) from e
    if template.answer_choices is not None and target not in choices:
        raise SourceDataError(f"{where}: target {target!r} is not one of its answer_choices {choices}",
                              file=template.file, task=task, example=example_id)
    return raw_example(input=prompt, target=target, options=choices if template.answer_choices else [],
                       id=f"{task}-{split}-{example_id}")


def template_tasks(task: hoc.HeldOutTask, templates: Sequence[PSTemplate], eval_rows: Sequence[dict],
                   eval_split: str, train_rows: Sequence[dict], seed: int = 0, *, on_template_error: str = "raise",
                   failures: list | None = None) -> list[EvalTask]:
    """One EvalTask per original-task template of one dataset; with `on_template_error='drop'` a template that
    fails on any row is left out and appended to `failures` (a `TemplateFailure`)."""
    if on_template_error not in ON_TEMPLATE_ERROR:
        raise ValueError(f"on_template_error={on_template_error!r}: expected one of {ON_TEMPLATE_ERROR}")
    name = task.info.name
    out, used_names = [], set()
    for template in templates:
        renderer = TemplateRenderer(seed)  # per template: the `choice` filter draws the same way on every run
        rendered, errors = hoc.render_rows(
            lambda r, example_id, split: render_row(renderer, template, r, task=name, example_id=example_id,
                                                    split=split),
            ((eval_split, eval_rows), ("train", train_rows)), on_template_error)
        if errors:
            failures = failures if failures is not None else []
            failures.append(template_failures.TemplateFailure(
                source=SUITE, task=name, template=template.name, template_id=template.id,
                failed_examples=len(errors), examples=len(eval_rows) + len(train_rows), first_example=errors[0][0],
                reason=str(errors[0][1])))
            continue
        examples, demos = rendered[eval_split], rendered["train"]
        label = template.name if template.name not in used_names else f"{template.name} ({template.id[:8]})"
        used_names.add(label)
        info = dataclasses.replace(task.info, category=category_slug(task.info.category),
                                   metric="accuracy" if template.answer_choices is not None else "rouge_l")
        out.append(EvalTask(info=info, examples=examples, demonstrations=demos, level=task.level, template=label,
                            parent_task=name, collection="promptsource"))
    return out


def _resolve_dirs(templates_dir, dataset_dir, default_root) -> tuple[pathlib.Path, pathlib.Path]:
    root = pathlib.Path(default_root) / "promptsource" if default_root is not None else None
    templates_dir = pathlib.Path(templates_dir) if templates_dir is not None else root
    dataset_dir = pathlib.Path(dataset_dir) if dataset_dir is not None else templates_dir
    if templates_dir is None:
        raise ValueError(f"suite {SUITE!r}: set PROMPTSOURCE_TEMPLATES_DIR and PROMPTSOURCE_DATA_DIR "
                         "(or DATA_DIR with DATA_DIR/promptsource/<dataset>/templates.yaml + split files)")
    for p, macro in ((templates_dir, "PROMPTSOURCE_TEMPLATES_DIR"), (dataset_dir, "PROMPTSOURCE_DATA_DIR")):
        if not p.is_dir():
            raise FileNotFoundError(f"suite {SUITE!r}: {p} is not a directory (set {macro})")
    return templates_dir, dataset_dir


@gin.configurable
def promptsource_held_out_tasks(templates_dir: str | os.PathLike | None = None,
                                dataset_dir: str | os.PathLike | None = None, *,
                                split_name: str = "opt_iml_paper", levels: Sequence[str] = hoc.HELD_OUT_LEVELS,
                                eval_splits: Sequence[str] = hoc.EVAL_SPLITS, max_examples: int | None = None,
                                max_demonstrations: int = hoc.MAX_DEMONSTRATION_ROWS, seed: int = 0,
                                default_root: str | os.PathLike | None = None,
                                on_template_error: str = "raise") -> list[EvalTask]:
    """EvalTasks of every held-out PromptSource task (per `split_name`, at `levels`) with data in `dataset_dir`.

    Without `templates_dir`, `default_root/promptsource` (DATA_DIR's layout) is used; without `dataset_dir`, the
    split files are looked for next to each templates.yaml. Raises when no held-out task has data at all.
    `on_template_error`: 'raise' (default) or 'drop' (reported; see the module docstring).
    """
    templates_dir, dataset_dir = _resolve_dirs(templates_dir, dataset_dir, default_root)
    out, skipped, failures = [], [], []
    for task in hoc.held_out_tasks("promptsource", split_name, levels):
        data = dataset_dir / task.reader_key
        if not data.exists() or (data.is_dir() and not hoc.available_splits(data, [*eval_splits, "train"])):
            hoc.skip_missing(SUITE, task, data)
            skipped.append(task.info.name)
            continue
        templates_file = templates_dir / task.reader_key / "templates.yaml"
        if not templates_file.is_file():
            raise SourceDataError("local dataset has no PromptSource templates.yaml (PROMPTSOURCE_TEMPLATES_DIR)",
                                  file=str(templates_file), task=task.info.name)
        templates = [t for t in load_templates_file(templates_file) if t.original_task]
        if not templates:
            raise SourceDataError("no original-task templates", file=str(templates_file), task=task.info.name)
        eval_split, rows = hoc.evaluation_rows(data, task.info.name, eval_splits, max_examples)
        out.extend(template_tasks(task, templates, rows, eval_split, hoc.demonstration_rows(data, max_demonstrations),
                                  seed, on_template_error=on_template_error, failures=failures))
    return hoc.finish_suite(SUITE, "PromptSource", out, skipped, failures, dataset_dir,
                            "<PROMPTSOURCE_DATA_DIR>/<dataset>[/<subset>]/validation.jsonl, e.g. "
                            "super_glue/cb/validation.jsonl")
