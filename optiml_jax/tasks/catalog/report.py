"""Counts per collection and split next to the paper's Table 1.

    python -m optiml_jax.tasks.catalog.report [--split opt_iml_paper] [--markdown]
`python -m optiml_jax.tasks list` can call `main(argv)` (or `report()` / `format_markdown()`).
"""

from __future__ import annotations

import argparse
import collections
import json

from optiml_jax.tasks.catalog.entries import load_catalog
from optiml_jax.tasks.catalog.splits import get_split, trainable_tasks

# Paper Table 1: (# clusters, # tasks) per collection; and OPT-IML Bench's train/dev/test rows.
PAPER_TABLE1 = {"niv2": (76, 1613), "promptsource": (51, 280), "crossfit": (32, 159), "flan": (12, 70),
                "exmix": (10, 14), "t5": (9, 36), "unifiedskg": (7, 21), "reasoning": (1, 14)}
PAPER_SPLITS = {"train": (93, 1545), "validation": (7, 35), "test": (10, 87)}


def report(split_name: str = "opt_iml_paper") -> dict:
    tasks = load_catalog()
    split = get_split(split_name, tasks)
    train = trainable_tasks(split, tasks)
    train_names = {t.name for t in train}
    per = collections.defaultdict(lambda: {"tasks": 0, "categories": set(), "train": 0, "validation": 0, "test": 0,
                                           "excluded_shared_source": 0})
    for t in tasks:
        row = per[t.collection]
        row["tasks"] += 1
        row["categories"].add(t.category)
        if t.name in train_names:
            row["train"] += 1
        level = split.level(t)
        if level is not None and level != "fully_supervised":
            row["validation" if t.name in split.validation_tasks else "test"] += 1
        elif level is None and t.name not in train_names and split.is_trainable(t):
            row["excluded_shared_source"] += 1
    evals = split.evaluation_tasks(tasks)
    cats = {s: {t.category for t, _ in split.evaluation_tasks(tasks, s)} for s in ("validation", "test")}
    collections_out = {}
    for c, row in sorted(per.items()):
        paper = PAPER_TABLE1.get(c)
        collections_out[c] = {**{k: v for k, v in row.items() if k != "categories"},
                              "categories": len(row["categories"]),
                              "paper_categories": paper[0] if paper else None, "paper_tasks": paper[1] if paper else None}
    for c, (pc, pt) in PAPER_TABLE1.items():
        collections_out.setdefault(c, {"tasks": 0, "categories": 0, "train": 0, "validation": 0, "test": 0,
                                       "excluded_shared_source": 0, "paper_categories": pc, "paper_tasks": pt})
    levels = collections.Counter(level for _, level in evals)
    return {"split": split.name, "collections": collections_out,
            "totals": {"tasks": len(tasks), "categories": len({t.category for t in tasks}), "train": len(train),
                       "train_categories": len({t.category for t in train}),
                       "validation": sum(1 for t, _ in evals if t.name in split.validation_tasks),
                       "validation_categories": len(cats["validation"]),
                       "test": sum(1 for t, _ in evals if t.name not in split.validation_tasks),
                       "test_categories": len(cats["test"]),
                       "eval_only_tasks_outside_catalog": len(split.held_out_tasks - {t.name for t in tasks}),
                       "levels": dict(levels)},
            "paper_splits": {k: {"categories": v[0], "tasks": v[1]} for k, v in PAPER_SPLITS.items()}}


def format_markdown(r: dict) -> str:
    lines = [f"Split `{r['split']}` (eval counts include fully supervised tasks only in `levels`)", "",
             "| collection | tasks | paper tasks | categories | paper clusters | train | validation | test | "
             "dropped (shared source) |", "|---|---|---|---|---|---|---|---|---|"]
    for c, row in r["collections"].items():
        lines.append(f"| {c} | {row['tasks']} | {row['paper_tasks'] or '-'} | {row['categories']} | "
                     f"{row['paper_categories'] or '-'} | {row['train']} | {row['validation']} | {row['test']} | "
                     f"{row['excluded_shared_source']} |")
    t, p = r["totals"], r["paper_splits"]
    lines += ["", "| split | tasks | paper tasks | categories | paper clusters |", "|---|---|---|---|---|",
              f"| train | {t['train']} | {p['train']['tasks']} | {t['train_categories']} | {p['train']['categories']} |",
              f"| validation | {t['validation']} | {p['validation']['tasks']} | {t['validation_categories']} | "
              f"{p['validation']['categories']} |",
              f"| test | {t['test']} | {p['test']['tasks']} | {t['test_categories']} | {p['test']['categories']} |",
              "", f"All catalog tasks: {t['tasks']} in {t['categories']} categories; evaluation levels: {t['levels']}; "
              f"eval-only tasks outside the catalog (MMLU subjects): {t['eval_only_tasks_outside_catalog']}."]
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="OPT-IML Bench catalog counts vs the paper's Table 1")
    p.add_argument("--split", default="opt_iml_paper")
    p.add_argument("--json", action="store_true", help="print JSON instead of markdown")
    a = p.parse_args(argv)
    r = report(a.split)
    print(json.dumps(r, indent=1) if a.json else format_markdown(r))


if __name__ == "__main__":
    main()
