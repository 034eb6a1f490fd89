"""RAFT: `raft/<task>/{train.csv, task.json}` (50 labelled examples per task; test labels are hidden).

Evaluation on a held-out slice of train: the last `num_eval` labelled rows are evaluated, the others are
the demonstration pool. Options are the label names from task.json (rank classification, accuracy).
Labels in train.csv may be names or 1-based indices (the original release).
"""

from __future__ import annotations

import csv
import json
import os
import pathlib
from typing import Sequence

from optiml_jax.sources.raw_examples import SourceDataError
from optiml_jax.paths import open_text, user_path
from optiml_jax.evaluation.eval_tasks import EvalTask
from optiml_jax.tasks.metadata import TaskInfo


def read_raft_task(folder: pathlib.Path) -> tuple[list[str], list[dict]]:
    """(label names, raw examples of train.csv) of one RAFT task."""
    name = folder.name
    try:
        meta = json.loads((folder / "task.json").read_text())
        (label_col, labels), = meta["label_columns"].items()
        columns = [c for c in meta["data_columns"] if c != "ID"]
    except (OSError, json.JSONDecodeError, KeyError, ValueError) as e:
        raise SourceDataError(f"bad or missing task.json ({e})", file=str(folder / "task.json"), task=name) from None
    instruction = (meta.get("description") or "").strip() or (
        f"Classify the {' and '.join(c.lower() for c in columns)} as one of: {', '.join(labels)}.")
    out = []
    path = folder / "train.csv"
    with open_text(path) as f:
        for i, row in enumerate(csv.DictReader(f)):
            raw = (row.get(label_col) or "").strip()
            label = labels[int(raw) - 1] if raw.isdigit() and 1 <= int(raw) <= len(labels) else raw
            if label not in labels:
                raise SourceDataError(f"label {raw!r} is not one of {labels}", file=str(path), task=name,
                                      example=str(i))
            text = "\n".join(f"{c}: {(row.get(c) or '').strip()}" for c in columns)
            out.append({"instruction": instruction, "input": text, "target": label, "references": [label],
                        "options": list(labels), "id": f"raft_{name}-{row.get('ID', i)}"})
    return list(labels), out


def raft_tasks(root: str | os.PathLike, *, tasks: Sequence[str] | None = None, num_eval: int = 10,
               level: str | None = "fully_held_out") -> list[EvalTask]:
    root = user_path(root, "DATA_DIR")  # local, or a URL read through its filesystem
    names = sorted(p.name for p in root.iterdir() if (p / "train.csv").is_file()) if tasks is None else list(tasks)
    if not names:
        raise FileNotFoundError(f"RAFT: no <task>/train.csv under {root}")

    def fn(example: dict, demos: Sequence[dict]) -> str:
        blocks = [f"{d['input']}\nLabel: {d['target']}" for d in demos] + [f"{example['input']}\nLabel:"]
        return example["instruction"] + "\n\n" + "\n\n".join(blocks)

    out = []
    for name in names:
        _, examples = read_raft_task(root / name)
        if len(examples) <= num_eval:
            raise SourceDataError(f"only {len(examples)} labelled rows; cannot hold out {num_eval}", task=name)
        info = TaskInfo(name=f"raft_{name}", collection="flan", category="raft", metric="accuracy",
                        source_dataset="raft")
        out.append(EvalTask(info=info, examples=examples[-num_eval:], demonstrations=examples[:-num_eval],
                            level=level, parent_task="raft", format_fn=fn, collection="raft"))
    return out
