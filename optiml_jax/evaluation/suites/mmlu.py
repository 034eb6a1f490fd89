"""MMLU (Hendrycks et al.): `mmlu/{dev,test}/<subject>[_dev|_test].csv` with header
question,choice0,choice1,choice2,choice3,answer (answer = index 0-3).

Prompt (the original evaluation's): "The following are multiple choice questions (with answers) about
<subject>.\\n\\n" then k solved dev questions and the test question, each "Q\\nA. ..\\nB. ..\\nC. ..\\nD. ..\\n
Answer:"; the options " A" ... " D" are rank-classified. The 57 subjects are subtasks of one "mmlu" task.
"""

from __future__ import annotations

import csv
import os
import pathlib
from typing import Sequence

from optiml_jax.sources.raw_examples import SourceDataError
from optiml_jax.paths import open_text, user_path
from optiml_jax.evaluation.eval_tasks import EvalTask
from optiml_jax.tasks.metadata import TaskInfo

LETTERS = ("A", "B", "C", "D")
COLUMNS = ("question", "choice0", "choice1", "choice2", "choice3", "answer")


def _subject_files(folder: pathlib.Path, split: str) -> dict[str, pathlib.Path]:
    out = {}
    for p in sorted(folder.glob("*.csv")):
        name = p.stem[: -len(f"_{split}")] if p.stem.endswith(f"_{split}") else p.stem
        out[name] = p
    return out


def read_mmlu_csv(path: pathlib.Path, subject: str) -> list[dict]:
    """Raw examples of one subject file; bad rows raise SourceDataError naming file and row."""
    with open_text(path) as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise SourceDataError(f"expected header {','.join(COLUMNS)}, got {reader.fieldnames}", file=str(path),
                                  task=f"mmlu_{subject}")
        out = []
        for i, row in enumerate(reader):
            try:
                answer = int(row["answer"])
                assert 0 <= answer < 4
            except (ValueError, TypeError, AssertionError):
                raise SourceDataError(f"answer {row['answer']!r} is not an index 0-3", file=str(path),
                                      task=f"mmlu_{subject}", example=str(i)) from None
            body = row["question"].strip() + "\n" + "\n".join(
                f"{letter}. {row[f'choice{j}'].strip()}" for j, letter in enumerate(LETTERS))
            out.append({"instruction": "", "input": body, "target": LETTERS[answer], "references": [LETTERS[answer]],
                        "options": list(LETTERS), "id": f"mmlu_{subject}-{path.parent.name}-{i}"})
    return out


def _format(subject: str):
    header = f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"

    def fn(example: dict, demos: Sequence[dict]) -> str:
        shots = "".join(f"{d['input']}\nAnswer: {d['target']}\n\n" for d in demos)
        return f"{header}{shots}{example['input']}\nAnswer:"

    return fn


def mmlu_tasks(root: str | os.PathLike, *, subjects: Sequence[str] | None = None, eval_split: str = "test",
               max_examples: int | None = None, level: str | None = "partially_supervised") -> list[EvalTask]:
    """One EvalTask per subject (parent task "mmlu"); demonstrations = the subject's dev rows.

    `level`: the paper puts MMLU in the partially supervised level (Table 15)."""
    root = user_path(root, "DATA_DIR")  # local, or a URL read through its filesystem
    dev, test = _subject_files(root / "dev", "dev"), _subject_files(root / eval_split, eval_split)
    if not test:
        raise FileNotFoundError(f"MMLU: no {eval_split} CSV files under {root / eval_split}")
    names = sorted(test) if subjects is None else list(subjects)
    missing = [s for s in names if s not in test]
    if missing:
        raise FileNotFoundError(f"MMLU: subjects {missing} have no file in {root / eval_split}")
    out = []
    for s in names:
        info = TaskInfo(name=f"mmlu_{s}", collection="flan", category="mmlu", metric="accuracy",
                        source_dataset="mmlu")
        demos = read_mmlu_csv(dev[s], s) if s in dev else []
        out.append(EvalTask(info=info, examples=read_mmlu_csv(test[s], s)[:max_examples], demonstrations=demos,
                            level=level, parent_task="mmlu", format_fn=_format(s), collection="mmlu"))
    return out
