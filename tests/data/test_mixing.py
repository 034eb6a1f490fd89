"""Mixing rates: the paper's recipe arithmetic (EPS, caps, proportions, shares, renormalization)."""

import math

import pytest

from optiml_jax.data.demonstrations import MetaICLConfig, draw_num_shots, zipf_shot_probabilities
from optiml_jax.tasks.recipe import MixtureRecipe, compute_rates
from optiml_jax.tasks.metadata import TaskInfo

COLLS = ("crossfit", "exmix", "flan", "niv2", "promptsource", "t5", "unifiedskg", "reasoning", "pretraining")


def _tasks(per_coll=2, n=1000):
    tasks = [TaskInfo(f"{c}_{i}", c, "cat", full_sequence_loss=c == "pretraining") for c in COLLS for i in range(per_coll)]
    return tasks, {t.name: n for t in tasks}


def test_final_recipe_collection_shares():
    tasks, counts = _tasks()
    r = compute_rates(tasks, counts, MixtureRecipe())
    c = r.collection_rates
    assert math.isclose(sum(r.task_rates.values()), 1.0)
    assert math.isclose(c["pretraining"], 0.05) and math.isclose(c["reasoning"], 0.01)
    # 4/2/20/25/45/2/2 of the 95% instruction mass; reasoning's 1% comes out of NIv2's share
    for coll, p in {"crossfit": 4, "exmix": 2, "flan": 20, "promptsource": 45, "t5": 2, "unifiedskg": 2}.items():
        assert math.isclose(c[coll], 0.95 * p / 100), coll
    assert math.isclose(c["niv2"], 0.95 * 0.25 - 0.01)
    assert "dialogue" not in c and r.missing == ()


def test_eps_and_hard_caps():
    tasks = [TaskInfo("small", "niv2", "c"), TaskInfo("big", "niv2", "c"), TaskInfo("huge", "niv2", "c")]
    counts = {"small": 1000, "big": 10_000, "huge": 500_000}
    r = compute_rates(tasks, counts, MixtureRecipe(eps=4096, proportions={"niv2": 1}, reasoning_share=0,
                                                   pretraining_share=0))
    assert math.isclose(r.task_rates["big"] / r.task_rates["small"], 4.096)
    assert math.isclose(r.task_rates["huge"], r.task_rates["big"])
    no_eps = MixtureRecipe(eps=10**6, proportions={"niv2": 1, "flan": 1}, reasoning_share=0, pretraining_share=0)
    flan = [TaskInfo("f_big", "flan", "c"), TaskInfo("f_small", "flan", "c")]
    r = compute_rates(tasks + flan, {**counts, "f_big": 50_000, "f_small": 10_000}, no_eps)
    assert r.capped_counts["huge"] == 100_000 and r.capped_counts["f_big"] == 30_000  # paper 2.1 caps
    assert math.isclose(r.task_rates["f_big"] / r.task_rates["f_small"], 3.0)


def test_missing_collections_are_renormalized_and_reported():
    tasks = [TaskInfo("a", "niv2", "c"), TaskInfo("b", "flan", "c")]
    r = compute_rates(tasks, {"a": 10, "b": 10}, MixtureRecipe())
    assert set(r.missing) == {"crossfit", "exmix", "promptsource", "t5", "unifiedskg", "reasoning", "pretraining"}
    assert math.isclose(r.collection_rates["flan"] / r.collection_rates["niv2"], 0.95 * 0.20 / (0.95 * 0.25 - 0.01))
    assert math.isclose(sum(r.collection_rates.values()), 1.0)
    assert any("MISSING" in line for line in r.report_lines())


def test_reasoning_taken_proportionally_when_no_source():
    tasks, counts = _tasks()
    r = compute_rates(tasks, counts, MixtureRecipe(reasoning_taken_from=None))
    assert math.isclose(r.collection_rates["niv2"], 0.95 * 0.25 * (0.94 / 0.95))


def test_zero_share_collections_are_left_out():
    tasks, counts = _tasks()
    tasks.append(TaskInfo("chat", "dialogue", "dialogue", full_sequence_loss=True))
    counts["chat"] = 100
    assert "chat" not in compute_rates(tasks, counts, MixtureRecipe()).task_rates
    r = compute_rates(tasks, counts, MixtureRecipe(dialogue_share=0.005))
    assert math.isclose(r.collection_rates["dialogue"], 0.005)


def test_bad_recipes_and_counts():
    with pytest.raises(ValueError, match="unknown collection"):
        MixtureRecipe(proportions={"bogus": 1})
    with pytest.raises(KeyError, match="no example count"):
        compute_rates([TaskInfo("a", "niv2", "c")], {}, MixtureRecipe())


def test_zipf_shots_match_the_papers_zero_shot_fractions():
    assert abs(zipf_shot_probabilities(4.0, 5)[0] - 0.925) < 5e-4  # paper 4.8: a=4 -> 92.5% 0-shot
    assert abs(zipf_shot_probabilities(2.0, 5)[0] - 0.671) < 5e-4  # a=2 -> 67.1%


def test_draw_num_shots_respects_share_and_cap():
    import numpy as np
    rng = np.random.default_rng(0)
    assert not draw_num_shots(rng, MetaICLConfig(), 100).any()
    k = draw_num_shots(rng, MetaICLConfig(share=1.0, zipf_a=2.0, max_shots=5), 20_000)
    assert k.max() == 5 and abs((k == 0).mean() - 0.671) < 0.02
    half = draw_num_shots(rng, MetaICLConfig(share=0.5, zipf_a=2.0), 20_000)
    assert abs((half > 0).mean() - 0.5 * (1 - 0.671)) < 0.02
