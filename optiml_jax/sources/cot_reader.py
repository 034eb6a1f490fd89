"""Chain-of-thought reasoning TSVs (FLAN's `cot_data/<name>_train.tsv`: question \\t answer \\t rationale, no header).

The Reasoning collection (paper section 2.2, Table 6): a single task-level prompt asking for step-by-step
reasoning; the target is the rationale followed by the answer. Tasks are named `cot_<name>`.
"""

from __future__ import annotations

import csv
import pathlib
import sys
from typing import Iterator

from optiml_jax.paths import open_text, user_path
from optiml_jax.sources.raw_examples import SourceDataError, raw_example

COT_INSTRUCTION = "Answer the following question by reasoning step by step."
ANSWER_PREFIX = "So the answer is"

csv.field_size_limit(sys.maxsize)


def cot_target(answer: str, rationale: str) -> str:
    """'<rationale> So the answer is <answer>.' (rationale first, then the answer)."""
    answer = answer.strip()
    end = "" if answer.endswith((".", "?", "!")) else "."
    return f"{rationale.strip()} {ANSWER_PREFIX} {answer}{end}"


def cot_files(data_dir: str | pathlib.Path) -> dict[str, pathlib.Path]:
    """{task name: tsv path} for `<name>_train.tsv` files in `data_dir`."""
    data_dir = user_path(data_dir, "COT_DATA_DIR")  # local or a bucket (optiml_jax.paths)
    if not data_dir.is_dir():
        raise SourceDataError("CoT data directory does not exist (set COT_DATA_DIR)", file=str(data_dir))
    files = {"cot_" + p.name[: -len("_train.tsv")]: p for p in sorted(data_dir.glob("*_train.tsv"))}
    if not files:
        raise SourceDataError("no *_train.tsv files in the CoT data directory", file=str(data_dir))
    return files


def read_cot_tsv(path: str | pathlib.Path, task: str | None = None,
                 instruction: str = COT_INSTRUCTION) -> Iterator[dict]:
    """Raw examples of one CoT TSV; a row without exactly 3 fields raises naming file and line."""
    path = user_path(path, "COT_DATA_DIR")
    task = task or "cot_" + path.name.split("_train")[0]
    n = 0
    try:
        f = open_text(path)
    except FileNotFoundError:
        raise SourceDataError("CoT file does not exist", file=str(path), task=task) from None
    with f:
        for line_no, row in enumerate(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE), start=1):
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != 3:
                raise SourceDataError(f"expected 3 tab-separated fields (question, answer, rationale), got {len(row)}",
                                      file=str(path), task=task, example=f"line {line_no}")
            question, answer, rationale = row
            if not question.strip() or not answer.strip():
                raise SourceDataError("empty question or answer", file=str(path), task=task, example=f"line {line_no}")
            n += 1
            yield raw_example(instruction=instruction, input=question.strip(), target=cot_target(answer, rationale),
                              references=[cot_target(answer, rationale), answer.strip()], id=f"{task}-{line_no}")
    if n == 0:
        raise SourceDataError("CoT file has no examples", file=str(path), task=task)
