"""FLAN templates applied to local dataset rows.

Formats: FLAN 2021 `flan2021_patterns.json` ({dataset: [[input, target], ...]}) and FLAN v2
`flan_v2_templates.json` (its "PATTERNS" entry, same shape). Templates are Python `str.format` strings over the
row's fields ({premise}, {answer}, ...); `{options_}` is built from the row's `options` list the way FLAN does
("OPTIONS:\\n- a\\n- b"). Only original-task templates are used (paper App. A.1): a template whose target differs
from the dataset's majority target (e.g. "Generate a context and a hypothesis." -> "Context: {premise}...")
is an inverted one and is dropped. Tasks are named `flan_<dataset>`.
"""

from __future__ import annotations

import collections
import pathlib
import string
from typing import Iterable, Iterator

from optiml_jax.paths import user_path
from optiml_jax.sources.raw_examples import SourceDataError, raw_example, read_json_file
from optiml_jax.sources.template_choice import pick_template

OPTIONS_PREFIX = "OPTIONS:\n- "
OPTIONS_SEPARATOR = "\n- "


def format_options(options: Iterable[str], prefix: str = OPTIONS_PREFIX, separator: str = OPTIONS_SEPARATOR) -> str:
    return prefix + separator.join(str(o) for o in options)


def load_patterns(path: str | pathlib.Path) -> dict[str, list[tuple[str, str]]]:
    """{dataset: [(input_template, target_template)]} from either FLAN file format."""
    path = user_path(path, "FLAN_TEMPLATES_FILE")  # local or a bucket (optiml_jax.paths)
    data = read_json_file(path, missing="FLAN templates file does not exist (set FLAN_TEMPLATES_FILE)")
    if isinstance(data, dict) and "PATTERNS" in data:
        data = data["PATTERNS"]
    if not isinstance(data, dict):
        raise SourceDataError("expected {dataset: [[input, target], ...]}", file=str(path))
    out = {}
    for ds, pats in data.items():
        if not isinstance(pats, list) or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in pats):
            raise SourceDataError("patterns must be [[input, target], ...]", file=str(path), task=f"flan_{ds}")
        out[ds] = [(str(a), str(b)) for a, b in pats]
    return out


def original_templates(patterns: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Drops inverted templates: those whose target template is not the dataset's most common one."""
    if not patterns:
        return []
    majority, _ = collections.Counter(t for _, t in patterns).most_common(1)[0]
    return [p for p in patterns if p[1] == majority]


def template_fields(template: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(template) if f}


def apply_template(inp: str, tgt: str, row: dict, *, task: str = "?", example: str = "?",
                   file: str | None = None) -> tuple[str, str]:
    fields = dict(row)
    if "options" in row and "options_" not in row:
        fields["options_"] = format_options(row["options"])
    missing = (template_fields(inp) | template_fields(tgt)) - set(fields)
    if missing:
        raise SourceDataError(f"row lacks template fields {sorted(missing)}", file=file, task=task, example=example)
    try:
        return inp.format(**fields), tgt.format(**fields)
    except (IndexError, KeyError, ValueError, AttributeError) as e:
        raise SourceDataError(f"template failed to format: {e}", file=file, task=task, example=example) from e


def read_flan_task(patterns: list[tuple[str, str]], rows: Iterable[dict], *, task: str, seed: int = 0,
                   all_templates: bool = False, file: str | None = None) -> Iterator[dict]:
    """Raw examples for one FLAN dataset; one sampled original template per row (or every template)."""
    templates = original_templates(patterns)
    if not templates:
        raise SourceDataError("dataset has no FLAN templates", file=file, task=task)
    n = 0
    for i, row in enumerate(rows):
        ex_id = str(row.get("id", f"{task}-{i}"))
        chosen = range(len(templates)) if all_templates else [pick_template(seed, task, i, len(templates))]
        for k in chosen:
            inp, tgt = apply_template(*templates[k], row, task=task, example=ex_id, file=file)
            options = [str(o) for o in row.get("options", [])] if "{options_}" in templates[k][0] else []
            n += 1
            yield raw_example(input=inp, target=tgt, options=options, id=f"{ex_id}-t{k}")
    if n == 0:
        raise SourceDataError("FLAN task has no examples", file=file, task=task)
