"""What the data path knows about a task, and how a split assigns tasks to generalization levels.

Shared by the embedded mini-benchmark and the real OPT-IML Bench catalog. Pure Python (no TF).
"""

from __future__ import annotations

import dataclasses
from typing import Iterable

COLLECTIONS = ("crossfit", "exmix", "flan", "niv2", "promptsource", "t5", "unifiedskg", "reasoning", "dialogue", "pretraining",
               "seqio")  # "seqio": a task registered without instruction metadata (optiml_jax.tasks.registry)
# How a collection phrases instructions (paper section 2.2): task-level definitions (demonstrations go
# between definition and input), instance-level templates (demonstrations go before the example), or
# keyword prompts turned into one hand-written instance-level sentence.
INSTRUCTION_TYPES = ("task", "instance", "keyword")
METRICS = ("accuracy", "rouge_l", "exact_match")
LEVELS = ("fully_held_out", "partially_supervised", "fully_supervised")


@dataclasses.dataclass(frozen=True)
class TaskInfo:
    """Metadata of one instruction task.

    `full_sequence_loss` is for pre-training text and dialogue: the source is empty and every token is
    a label (paper Table 6). `metric` decides rank classification (accuracy over options) vs generation.
    """

    name: str
    collection: str
    category: str
    instruction_type: str = "instance"
    metric: str = "rouge_l"
    full_sequence_loss: bool = False
    source_dataset: str = ""

    def __post_init__(self):
        if self.collection not in COLLECTIONS:
            raise ValueError(f"Task {self.name!r}: unknown collection {self.collection!r}; expected one of {COLLECTIONS}")
        if self.instruction_type not in INSTRUCTION_TYPES:
            raise ValueError(f"Task {self.name!r}: unknown instruction_type {self.instruction_type!r}")
        if self.metric not in METRICS:
            raise ValueError(f"Task {self.name!r}: unknown metric {self.metric!r}; expected one of {METRICS}")


@dataclasses.dataclass(frozen=True)
class GeneralizationSplit:
    """Assigns tasks to the three evaluation levels (paper section 1.5).

    - fully_held_out_categories: no task of these categories is ever trained on.
    - held_out_tasks: unseen tasks of seen categories (partially supervised level).
    - supervised_eval_tasks: trained tasks evaluated on their held-out instances (fully supervised level).
    - validation_tasks: evaluation tasks reserved for model selection (the rest are test).
    """

    name: str
    fully_held_out_categories: frozenset[str] = frozenset()
    held_out_tasks: frozenset[str] = frozenset()
    supervised_eval_tasks: frozenset[str] = frozenset()
    validation_tasks: frozenset[str] = frozenset()

    def level(self, task: TaskInfo) -> str | None:
        """The level `task` is evaluated at, or None when it is a training-only task."""
        if task.category in self.fully_held_out_categories:
            return "fully_held_out"
        if task.name in self.held_out_tasks:
            return "partially_supervised"
        if task.name in self.supervised_eval_tasks:
            return "fully_supervised"
        return None

    def is_trainable(self, task: TaskInfo) -> bool:
        """Whether the task's train split may enter training mixtures under this split."""
        return task.category not in self.fully_held_out_categories and task.name not in self.held_out_tasks

    def trainable(self, tasks: Iterable[TaskInfo]) -> list[TaskInfo]:
        return [t for t in tasks if self.is_trainable(t)]

    def evaluation_tasks(self, tasks: Iterable[TaskInfo], subset: str = "all") -> list[tuple[TaskInfo, str]]:
        """(task, level) pairs evaluated under this split; subset in {'all', 'validation', 'test'}."""
        out = []
        for t in tasks:
            lvl = self.level(t)
            if lvl is None:
                continue
            is_val = t.name in self.validation_tasks
            if subset == "all" or (subset == "validation") == is_val:
                out.append((t, lvl))
        return out
