"""Super-NaturalInstructions held-out evaluation (paper section 5.4): the tasks of chosen categories, the
first 100 instances per task, one prompt (the task definition), demonstrations = the task's positive
examples (placed between definition and input by `optiml_jax.tasks.formatting`), greedy generation scored
with Rouge-L, at 0/2/5 shots. Reads task files through `optiml_jax.sources.niv2_reader`.
"""

from __future__ import annotations

import os
import re
from typing import Sequence

from optiml_jax.evaluation.eval_tasks import EvalTask
from optiml_jax.tasks.metadata import TaskInfo

HELD_OUT_CATEGORIES = ("Textual Entailment", "Coreference Resolution", "Dialogue Act Recognition")
FIRST_INSTANCES = 100


def category_slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def niv2_tasks(data_dir: str | os.PathLike, *, categories: Sequence[str] | None = HELD_OUT_CATEGORIES,
               max_examples: int = FIRST_INSTANCES, level: str | None = "fully_held_out") -> list[EvalTask]:
    """EvalTasks for the NIv2 task files in `data_dir` whose first category is in `categories` (None = all)."""
    from optiml_jax.sources.niv2_reader import read_niv2_tasks

    out = []
    for t in read_niv2_tasks(data_dir):
        category = t.categories[0] if t.categories else "Misc."
        if categories is not None and category not in categories:
            continue
        info = TaskInfo(name=t.name, collection="niv2", category=category_slug(category), instruction_type="task",
                        metric="rouge_l", source_dataset=",".join(t.source))
        examples = []
        for i, ex in enumerate(t.examples()):
            if i >= max_examples:
                break
            examples.append(ex)
        demos = [{"instruction": t.definition, "input": d["input"], "target": d["target"], "references": [d["target"]],
                  "options": [], "id": f"{t.name}-positive-{j}"} for j, d in enumerate(t.demonstrations)]
        out.append(EvalTask(info=info, examples=examples, demonstrations=demos, level=level))
    return out
