"""The paper's aggregation (templates -> task -> category -> level; tasks -> collection) and report tables."""

import pytest

from optiml_jax.evaluation import aggregation, report


def rec(task, score, shots=0, template="default", parent=None, category="nli", level="fully_held_out",
        collection="flan"):
    return {"task": task, "base_task": task, "template": template, "parent_task": parent or task, "category": category,
            "level": level, "collection": collection, "shots": shots, "metric": "accuracy", "score": score}


RECORDS = [
    rec("rte", 60.0, template="t1"), rec("rte", 80.0, template="t2"),           # task rte = 70
    rec("cb", 40.0),                                                           # category nli = (70 + 40) / 2 = 55
    rec("wsc", 90.0, category="coref", collection="promptsource"),             # category coref = 90
    rec("mmlu_a", 20.0, parent="mmlu", category="mmlu", level="partially_supervised", collection="mmlu"),
    rec("mmlu_b", 40.0, parent="mmlu", category="mmlu", level="partially_supervised", collection="mmlu"),
    rec("rte", 50.0, shots=5, template="t1"),
]


def _row(rows, **match):
    (r,) = [r for r in rows if all(r[k] == v for k, v in match.items())]
    return r


def test_aggregation_levels_and_collections_by_hand():
    agg = aggregation.aggregate(RECORDS)
    assert _row(agg["tasks"], task="rte", shots=0)["score"] == 70.0
    assert _row(agg["tasks"], task="mmlu", shots=0)["score"] == 30.0
    assert _row(agg["tasks"], task="mmlu", shots=0)["num_subtasks"] == 2
    assert _row(agg["categories"], category="nli", shots=0)["score"] == 55.0
    # Level = mean over categories: (55 + 90) / 2, not the task mean (70 + 40 + 90) / 3.
    assert _row(agg["levels"], level="fully_held_out", shots=0)["score"] == 72.5
    assert _row(agg["levels"], level="partially_supervised", shots=0)["score"] == 30.0
    assert _row(agg["collections"], collection="flan", shots=0)["score"] == 55.0
    assert _row(agg["levels"], level="fully_held_out", shots=5)["score"] == 50.0
    assert _row(agg["overall"], shots=0)["score"] == pytest.approx((70 + 40 + 90 + 30) / 4)


def test_report_tables_with_baseline_difference():
    after = {"step": 100, "aggregates": aggregation.aggregate(RECORDS)}
    before = {"step": 0, "aggregates": aggregation.aggregate([dict(r, score=r["score"] - 10) for r in RECORDS])}
    table = report.markdown_table(after, "levels", before, run_name="after", baseline_name="before")
    line = [l for l in table.splitlines() if l.startswith("| Fully held-out")][0]
    assert "62.5 / 40.0" in line and "72.5 / 50.0" in line and "+10.0 / +10.0" in line
    text = report.render_report(after, before, title="Mini")
    assert text.startswith("# Mini") and "## Per collection" in text and "| mmlu |" in text


def _level_record(level, score, chance, majority, shots=0, task="t"):
    return {"task": f"{task}_{level}", "base_task": f"{task}_{level}", "template": None, "parent_task": None,
            "category": f"c_{level}", "level": level, "collection": "flan", "shots": shots, "metric": "accuracy",
            "score": score, "num_examples": 10, "chance": chance, "majority": majority}


def test_baselines_are_aggregated_like_scores_and_shown_with_a_reading():
    from optiml_jax.evaluation.outputs import results_dict

    recs = [_level_record("fully_held_out", 50.0, 50.0, 60.0), _level_record("fully_supervised", 90.0, 25.0, 40.0)]
    res = results_dict(recs, step=5, shots=[0])
    levels = {r["level"]: r for r in res["aggregates"]["levels"]}
    assert levels["fully_held_out"]["chance"] == 50.0 and levels["fully_supervised"]["majority"] == 40.0
    table = report.markdown_table(res, "levels")
    assert "chance / majority" in table and "50.0 / 60.0" in table and "25.0 / 40.0" in table
    line = report.reading(res)
    assert "fully supervised (0-shot) 90.0 vs floor 40.0" in line and "Fully held-out categories stay at the floor" in line
    base = results_dict([_level_record("fully_held_out", 50.0, 50.0, 60.0),
                         _level_record("fully_supervised", 70.0, 25.0, 40.0)], step=0, shots=[0])
    assert "fully supervised (0-shot) +20.0" in report.reading(res, base)
    flat = results_dict([_level_record("fully_held_out", 51.0, 50.0, 60.0)], step=5, shots=[0])
    assert report.reading(flat).startswith("No level is above its floor")


def test_evaluator_baselines_are_the_random_option_and_the_majority_target():
    from optiml_jax.evaluation.eval_tasks import EvalTask
    from optiml_jax.evaluation.evaluator import baselines
    from optiml_jax.tasks.metadata import TaskInfo

    exs = [{"instruction": "", "input": f"x{j}", "target": t, "references": [t], "options": opts, "id": str(j)}
           for j, (t, opts) in enumerate([("yes", ["yes", "no"]), ("yes", ["yes", "no"]), ("no", ["yes", "no"]),
                                           ("maybe", ["yes", "no", "maybe", "never"])])]
    task = EvalTask(info=TaskInfo("t", "flan", "c", metric="accuracy"), examples=exs, demonstrations=[], level="x")
    b = baselines(task, "accuracy")
    assert b["chance"] == (50 + 50 + 50 + 25) / 4 and b["majority"] == 50.0
    gen = baselines(task, "exact_match")
    assert gen["chance"] == 0.0 and gen["majority"] == 50.0
