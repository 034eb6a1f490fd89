"""PromptSource templates applied to local dataset files (JSONL / Parquet / CSV / saved HF dataset dir).

Original-task templates only (paper App. A.1). Each row gets one template drawn deterministically from the
pool (or every template with `all_templates=True`, as in the test split). A template that fails on a row raises
`SourceDataError` naming file, dataset and example, unless `skip_failing_templates=True` (the paper drops a
template that does not apply to all eval examples): then the template is dropped from that row on and reported,
one warning per task naming each dropped template, its first failing row and the reason, and a record in
`optiml_jax.sources.template_failures`. Neither a template nor the task ever disappears silently.
Tasks are named `ps_<dataset>[_<subset>]` (see `task_name`).
"""

from __future__ import annotations

import pathlib
import re
from typing import Iterable, Iterator

from optiml_jax.sources import template_failures
from optiml_jax.sources.local_datasets import find_split_file, iter_rows
from optiml_jax.sources.promptsource_templates import PSTemplate, TemplateRenderer, load_templates_file
from optiml_jax.sources.raw_examples import SourceDataError, raw_example
from optiml_jax.sources.template_choice import pick_template


def task_name(dataset_key: str) -> str:
    """'super_glue/copa' -> 'ps_super_glue_copa'."""
    return "ps_" + re.sub(r"[^0-9a-zA-Z]+", "_", dataset_key).strip("_").lower()


def original_task_templates(templates: list[PSTemplate]) -> list[PSTemplate]:
    return [t for t in templates if t.original_task]


def read_promptsource_task(templates: list[PSTemplate], rows: Iterable[dict], *, task: str, seed: int = 0,
                           all_templates: bool = False, skip_failing_templates: bool = False) -> Iterator[dict]:
    pool = original_task_templates(templates)
    if not pool:
        raise SourceDataError("no original-task templates", file=templates[0].file if templates else None, task=task)
    renderer = TemplateRenderer(seed)
    broken: dict[int, template_failures.TemplateFailure] = {}
    n = 0
    for i, row in enumerate(rows):
        ex_id = str(row.get("id", row.get("idx", f"{task}-{i}")))
        chosen = range(len(pool)) if all_templates else [pick_template(seed, task, i, len(pool))]
        for k in chosen:
            if k in broken:
                continue
            try:
                prompt, target, choices = renderer.apply(pool[k], row)
            except SourceDataError as e:
                if not skip_failing_templates:
                    raise SourceDataError(f"{e.args[0]} (task {task}, row {i})", file=pool[k].file, task=task,
                                          example=ex_id) from e
                broken[k] = template_failures.TemplateFailure(
                    source="promptsource", task=task, template=pool[k].name, template_id=pool[k].id,
                    failed_examples=1, examples=0, first_example=f"row {i} ({ex_id})", reason=str(e))
                continue
            n += 1
            yield raw_example(input=prompt, target=target, options=choices, id=f"{ex_id}-{pool[k].id[:8]}")
    template_failures.report(f"PromptSource task {task}", list(broken.values()))
    if n == 0:
        raise SourceDataError("PromptSource task produced no examples", file=pool[0].file, task=task)


def read_promptsource_dir(templates_file: str | pathlib.Path, dataset_dir: str | pathlib.Path, *,
                          split: str = "train", task: str | None = None, **kwargs) -> Iterator[dict]:
    """Applies one templates.yaml to `<dataset_dir>/<split>.{jsonl,json,parquet,csv}` or a saved HF dataset."""
    templates = load_templates_file(templates_file)
    task = task or task_name(templates[0].dataset if templates else pathlib.Path(templates_file).parent.name)
    yield from read_promptsource_task(templates, iter_rows(find_split_file(dataset_dir, split), split), task=task,
                                      **kwargs)
