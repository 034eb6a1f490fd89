"""Evaluation suites (paper sections 4.1, 6.1) and their names, so gin and the CLIs can say
`SUITES = ['mini_bench', 'mmlu']`. One module per suite: MMLU (5-shot from dev, option scoring), BIG-Bench
Hard (3-shot chain-of-thought, exact match on the extracted answer), RAFT (few-shot, scored on a held-out slice of
train), NIv2, and the held-out PromptSource/FLAN templates.

Named evaluation suites -> `EvalTask` lists, so gin and the CLIs can say `SUITES = ['mini_bench', 'mmlu']`.

Suites and where their data comes from (`data_dir` holds the public formats, e.g. ../shared/data):
  mini_bench               the embedded mini-benchmark, all three generalization levels (test instances)
  mini_bench_validation    its validation-subset tasks on validation instances (model selection)
  mmlu                     data_dir/mmlu/{dev,test}/*.csv, 5-shot demonstrations from dev
  bbh                      data_dir/bbh/{bbh,cot-prompts}, 3-shot chain-of-thought prompts
  raft                     data_dir/raft/<task>/train.csv, evaluated on a held-out slice of train
  niv2_held_out            data_dir/niv2/tasks/*.json of the 3 held-out categories, first 100 instances
  niv2_all                 every NIv2 task file in data_dir/niv2/tasks (first 100 instances)
  promptsource_held_out    held-out PromptSource tasks of the split with local data, one EvalTask per original-task
                           template (gin: promptsource_held_out_tasks.templates_dir / .dataset_dir; default
                           data_dir/promptsource/<dataset>/{templates.yaml, validation.jsonl})
  flan_held_out            held-out FLAN tasks with local data, one EvalTask per original template (gin:
                           flan_held_out_tasks.templates_file / .dataset_dir; default data_dir/flan/...)
"""

from __future__ import annotations

import os
import pathlib
from typing import Sequence

from optiml_jax.evaluation.eval_tasks import EvalTask, mini_bench_tasks
from optiml_jax.evaluation.suites import flan as flan_suite  # registers the gin configurable
from optiml_jax.evaluation.suites import niv2
from optiml_jax.evaluation.suites import promptsource as promptsource_suite  # registers the gin configurable
from optiml_jax.evaluation.suites.bbh import bbh_tasks
from optiml_jax.evaluation.suites.mmlu import mmlu_tasks
from optiml_jax.evaluation.suites.niv2 import niv2_tasks
from optiml_jax.evaluation.suites.raft import raft_tasks
from optiml_jax.paths import user_path

SUITES = ("mini_bench", "mini_bench_validation", "mmlu", "bbh", "raft", "niv2_held_out", "niv2_all",
          "promptsource_held_out", "flan_held_out")


def _need(data_dir: str | os.PathLike | None, sub: str, suite: str):
    if data_dir is None:
        raise ValueError(f"suite {suite!r} reads files: set DATA_DIR (e.g. --gin.DATA_DIR=../shared/data)")
    p = user_path(data_dir, "DATA_DIR") / sub  # a bucket stays a URL (optiml_jax.paths)
    if not p.exists():
        raise FileNotFoundError(f"suite {suite!r}: {p} does not exist (DATA_DIR={data_dir})")
    return p


def build_suite(name: str, data_dir: str | os.PathLike | None = None, *,
                max_examples: int | None = None) -> list[EvalTask]:
    """The EvalTasks of one suite; `max_examples` caps instances per task (None = the suite's protocol)."""
    if name == "mini_bench":
        return mini_bench_tasks(max_examples=max_examples)
    if name == "mini_bench_validation":
        return mini_bench_tasks(subset="validation", eval_split="validation", max_examples=max_examples)
    if name == "mmlu":
        return mmlu_tasks(_need(data_dir, "mmlu", name), max_examples=max_examples)
    if name == "bbh":
        return bbh_tasks(_need(data_dir, "bbh", name), max_examples=max_examples)
    if name == "raft":
        return raft_tasks(_need(data_dir, "raft", name))
    if name in ("niv2_held_out", "niv2_all"):
        cats = niv2.HELD_OUT_CATEGORIES if name == "niv2_held_out" else None
        kwargs = {} if max_examples is None else {"max_examples": max_examples}
        return niv2_tasks(_need(data_dir, "niv2/tasks", name), categories=cats, **kwargs)
    if name == "promptsource_held_out":
        return promptsource_suite.promptsource_held_out_tasks(max_examples=max_examples, default_root=data_dir)
    if name == "flan_held_out":
        return flan_suite.flan_held_out_tasks(max_examples=max_examples, default_root=data_dir)
    raise ValueError(f"unknown evaluation suite {name!r}; known: {SUITES}")


def build_suites(names: Sequence[str], data_dir: str | os.PathLike | None = None, *,
                 max_examples: int | None = None) -> list[EvalTask]:
    if isinstance(names, str):
        names = [names]
    tasks: list[EvalTask] = []
    for n in names:
        tasks.extend(build_suite(n, data_dir, max_examples=max_examples))
    if not tasks:
        raise ValueError(f"suites {list(names)} produced no tasks")
    return tasks
