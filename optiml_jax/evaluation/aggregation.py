"""The paper's aggregation of score records (section 4 model-selection rule and the tables of section 5).

Given one record per (task, template, shots):
1. task score = mean over the task's prompt templates ("metrics are averaged over multiple prompts");
2. a parent task's score = mean over its subtasks (e.g. the 57 MMLU subjects make one MMLU score);
3. category score = mean over the (parent) tasks of that category, per generalization level;
4. level score = mean over that level's category scores (categories weigh equally, as in the NIv2
   table where "Avg" is the mean of the held-out categories);
5. collection score = mean over its tasks (the "Avg" columns of Tables 9-11).
Everything is computed separately per number of shots, so 0-shot and k-shot sit side by side. The baselines
of each record (`chance`, `majority`: what a model that learned nothing scores) are aggregated the same way.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable, Sequence

UNASSIGNED_LEVEL = "unassigned"


BASELINES = ("chance", "majority")


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs)


def _means(rows: Sequence[dict[str, Any]], keys=("score",) + BASELINES) -> dict[str, float]:
    """{key: mean over rows} for the keys every row has."""
    return {k: _mean([r[k] for r in rows]) for k in keys if rows and all(k in r for r in rows)}


def task_scores(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Steps 1-2: one row per (parent task, shots)."""
    by_template: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        by_template[(r.get("parent_task") or r["base_task"], r["base_task"], r["shots"])].append(r)
    per_subtask: dict[tuple, list[tuple[dict, dict]]] = defaultdict(list)
    for (parent, _, shots), rs in by_template.items():
        per_subtask[(parent, shots)].append((_means(rs), rs[0]))
    out = []
    for (parent, shots), items in sorted(per_subtask.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        first = items[0][1]
        out.append({"task": parent, "shots": shots, **_means([m for m, _ in items]),
                    "category": first["category"], "level": first.get("level") or UNASSIGNED_LEVEL,
                    "collection": first["collection"], "metric": first["metric"], "num_subtasks": len(items)})
    return out


def aggregate(records: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """{"tasks", "categories", "levels", "collections", "overall"}: lists of rows with "shots" and "score"."""
    tasks = task_scores(records)
    cats: dict[tuple, list[dict]] = defaultdict(list)
    colls: dict[tuple, list[dict]] = defaultdict(list)
    overall: dict[int, list[dict]] = defaultdict(list)
    for t in tasks:
        cats[(t["level"], t["category"], t["shots"])].append(t)
        colls[(t["collection"], t["shots"])].append(t)
        overall[t["shots"]].append(t)
    categories = [{"level": lvl, "category": cat, "shots": k, **_means(v), "num_tasks": len(v)}
                  for (lvl, cat, k), v in sorted(cats.items())]
    lv: dict[tuple, list[dict]] = defaultdict(list)
    for c in categories:
        lv[(c["level"], c["shots"])].append(c)
    levels = [{"level": lvl, "shots": k, **_means(cs), "num_categories": len(cs),
               "num_tasks": sum(c["num_tasks"] for c in cs)} for (lvl, k), cs in sorted(lv.items())]
    collections = [{"collection": c, "shots": k, **_means(v), "num_tasks": len(v)}
                   for (c, k), v in sorted(colls.items())]
    overall_rows = [{"shots": k, **_means(v), "num_tasks": len(v)} for k, v in sorted(overall.items())]
    return {"tasks": tasks, "categories": categories, "levels": levels, "collections": collections,
            "overall": overall_rows}
