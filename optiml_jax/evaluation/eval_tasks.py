"""`EvalTask`: one (task, prompt template) to evaluate, with its instances, its demonstration pool and its place
in the paper's aggregation (category, generalization level, collection, parent task), plus builders for
the mini-benchmark split and for reader-produced raw examples.

Why a plain dataclass rather than a SeqIO task: the paper's suites (MMLU, BBH, RAFT, NIv2 held-out
categories) are evaluation-only files in their own formats, and rank classification needs the options
of each instance, which a tokenized SeqIO dataset no longer carries. SeqIO tasks with their own metric
functions go through `optiml_jax.evaluation.seqio_glue` instead.
"""

from __future__ import annotations

import dataclasses
import zlib
from typing import Callable, Sequence

import numpy as np

from optiml_jax.tasks.formatting import draw_demonstrations
from optiml_jax.tasks.metadata import GeneralizationSplit, TaskInfo

# (example, demonstrations already chosen) -> source text. None = the data path's `format_few_shot` layout.
FormatFn = Callable[[dict, Sequence[dict]], str]


@dataclasses.dataclass
class EvalTask:
    """What to evaluate and how it aggregates.

    Attributes:
      info: task metadata (name, collection, category, metric). `metric == "accuracy"` with non-empty
        `options` per example means rank classification; otherwise greedy generation.
      examples: evaluation instances (raw-example dicts, docs/ARCHITECTURE.md).
      demonstrations: pool for k-shot prompts (the task's train split); k are drawn per example, seeded.
      level: generalization level ("fully_held_out" / "partially_supervised" / "fully_supervised") or None.
      template: prompt-variant name; a task's score is the mean over its templates.
      parent_task: groups subtasks (MMLU subjects, BBH subtasks) into one per-task score; default the task.
      format_fn: custom prompt builder (e.g. BBH's fixed chain-of-thought prompt); default `format_few_shot`.
      answer_extractor: maps a generation to the answer that is compared (BBH: text after "the answer is").
      fixed_shots: the number of shots the format_fn builds in itself (BBH: 3); the run's k is ignored.
      collection: overrides `info.collection` in results (evaluation-only suites: "mmlu", "bbh", "raft").
    """

    info: TaskInfo
    examples: Sequence[dict]
    demonstrations: Sequence[dict] = ()
    level: str | None = None
    template: str = "default"
    parent_task: str | None = None
    format_fn: FormatFn | None = None
    answer_extractor: Callable[[str], str] | None = None
    fixed_shots: int | None = None
    collection: str | None = None

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def key(self) -> str:
        """Unique id of this (task, template) in results."""
        return self.info.name if self.template == "default" else f"{self.info.name}/{self.template}"

    @property
    def collection_name(self) -> str:
        return self.collection or self.info.collection

    @property
    def group(self) -> str:
        return self.parent_task or self.info.name

    def is_rank_classification(self) -> bool:
        return self.info.metric == "accuracy" and all(ex.get("options") for ex in self.examples)


def pick_demonstrations(task: EvalTask, example: dict, k: int, seed: int = 0) -> list[dict]:
    """k demonstrations from the task's pool, a pure function of (seed, task, example id); never the example
    itself. Fewer when the pool is small."""
    if k <= 0 or not task.demonstrations:
        return []
    pool = [d for d in task.demonstrations if d.get("id") != example.get("id")]
    key = [seed, zlib.crc32(task.key.encode()), zlib.crc32(str(example.get("id", "")).encode())]
    return [pool[i] for i in draw_demonstrations(np.random.default_rng(key), len(pool), k)]


def mini_bench_tasks(split: GeneralizationSplit | None = None, *, subset: str = "all", eval_split: str = "test",
                     max_examples: int | None = None, levels: Sequence[str] | None = None) -> list[EvalTask]:
    """The embedded mini-benchmark's evaluation tasks under `split` (default: its own), with their level.

    `subset` is the split's "all" / "validation" / "test" task subset; `eval_split` which instances
    ("test" or "validation"); demonstrations come from each task's train split.
    """
    from optiml_jax.tasks.mini_bench import SPLIT, TASKS, generate_task

    split = split or SPLIT
    out = []
    for info, level in split.evaluation_tasks(TASKS, subset=subset):
        if levels is not None and level not in levels:
            continue
        data = generate_task(info.name)
        if eval_split not in data:
            raise ValueError(f"mini-benchmark task {info.name!r} has no split {eval_split!r}; has {sorted(data)}")
        examples = list(data[eval_split])[:max_examples]
        out.append(EvalTask(info=info, examples=examples, demonstrations=data["train"], level=level))
    return out


def tasks_from_raw(infos_and_examples: Sequence[tuple[TaskInfo, Sequence[dict], Sequence[dict]]],
                   split: GeneralizationSplit | None = None, *, level: str | None = None,
                   max_examples: int | None = None) -> list[EvalTask]:
    """EvalTasks from reader output: (TaskInfo, eval examples, demonstration pool) triples. The level comes
    from `split` when given, else `level` for all."""
    out = []
    for info, examples, demos in infos_and_examples:
        lvl = split.level(info) if split is not None else level
        out.append(EvalTask(info=info, examples=list(examples)[:max_examples], demonstrations=list(demos), level=lvl))
    return out
