"""Registration from any raw-example source (JSONL here), SeqIO integration, mixtures, counts checks."""

import json

import numpy as np
import pytest
import seqio

from optiml_jax.tasks.formatting import BrokenExampleError
from optiml_jax.tasks import mixtures, registry
from optiml_jax.tasks.metadata import TaskInfo


@pytest.fixture(scope="module")
def vocab():
    import optiml_jax.tasks.mini_bench.registration as mb

    return mb.VOCABULARY


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_jsonl_task_is_a_real_seqio_task(tmp_path, vocab):
    rows = [{"instruction": "", "input": f"Say {w}:", "target": w, "id": f"r{i}"} for i, w in enumerate(["hi", "yo"])]
    info = TaskInfo("test_jsonl_task", "flan", "copying")
    registry.register_instruction_task(info, {"train": registry.jsonl_split(_write(tmp_path / "a.jsonl", rows))},
                                       vocab, {"train": 2}, replace=True)
    task = seqio.get_mixture_or_task("test_jsonl_task")
    assert isinstance(task, seqio.Task)
    ds = task.get_dataset({"inputs": 32, "targets": 8}, split="train", shuffle=False)
    got = list(ds.as_numpy_iterator())
    assert [g["inputs_pretokenized"].decode() for g in got] == ["Say hi:", "Say yo:"]  # ends with ":": no delimiter
    assert got[0]["targets"].tolist() == list(vocab.encode(" hi")) + [2]
    mixtures.register_rate_mixture("test_jsonl_mix", {"test_jsonl_task": 3.0, "mini_bench_niv2_add": 1.0})
    assert mixtures.resolve_rates("test_jsonl_mix") == {"test_jsonl_task": 0.75, "mini_bench_niv2_add": 0.25}
    assert seqio.get_mixture_or_task("test_jsonl_mix").get_rate(task) == 3.0


def test_unregister_removes_task_everywhere(tmp_path, vocab):
    rows = [{"instruction": "", "input": "q", "target": "a"}]
    info = TaskInfo("test_scratch_task", "flan", "copying")
    registry.register_instruction_task(info, {"train": registry.jsonl_split(_write(tmp_path / "s.jsonl", rows))},
                                       vocab)
    assert len(registry.load_raw_examples("test_scratch_task", "train")) == 1
    registry.unregister_task("test_scratch_task")
    assert "test_scratch_task" not in {t.info.name for t in registry.registered_tasks()}
    assert "test_scratch_task" not in seqio.TaskRegistry.names()
    with pytest.raises(KeyError, match="no task named 'test_scratch_task'"):
        registry.unregister_task("test_scratch_task")


def test_counts_mismatch_and_bad_json_are_named(tmp_path, vocab):
    rows = [{"instruction": "", "input": "q", "target": "a"}]
    info = TaskInfo("test_count_task", "flan", "copying")
    registry.register_instruction_task(info, {"train": registry.jsonl_split(_write(tmp_path / "b.jsonl", rows))},
                                       vocab, {"train": 5}, replace=True)
    with pytest.raises(ValueError, match="test_count_task.*counts file says 5.*yielded 1"):
        registry.load_raw_examples("test_count_task", "train")
    bad = tmp_path / "c.jsonl"
    bad.write_text('{"instruction": "", "input": "q", "target": "a"}\n{oops\n')
    registry.register_instruction_task(TaskInfo("test_badjson", "flan", "c"), {"train": registry.jsonl_split(bad)},
                                       vocab, replace=True)
    with pytest.raises(ValueError, match=r"c\.jsonl:2"):
        registry.load_raw_examples("test_badjson", "train")
    with pytest.raises(ValueError, match="already registered"):
        registry.register_instruction_task(TaskInfo("test_badjson", "flan", "c"), {"train": list}, vocab)
    with pytest.raises(KeyError, match="no task named 'nope' is registered.*MIXTURE_OR_TASK_MODULE"):
        registry.get_task("nope")


def test_template_failure_raises_naming_task(vocab):
    def broken_reader():
        yield {"instruction": "", "input": "fine", "target": "ok"}
        yield {"instruction": "", "input": "no target here", "id": "ex-7"}

    registry.register_instruction_task(TaskInfo("test_template_fail", "promptsource", "c"), {"train": broken_reader},
                                       vocab, replace=True)
    with pytest.raises(BrokenExampleError, match="test_template_fail.*ex-7.*missing"):
        registry.load_raw_examples("test_template_fail", "train")


def test_recipe_mixture_is_registered_with_effective_rates(vocab):
    import gin

    rates = mixtures.recipe_rates("mini_bench_train")
    mix = seqio.get_mixture_or_task("mini_bench_train")
    for t in mix.tasks:
        assert mix.get_rate(t) == pytest.approx(rates.task_rates[t.name])
    assert set(rates.collection_rates) == {"crossfit", "exmix", "flan", "niv2", "promptsource", "t5", "unifiedskg",
                                           "reasoning", "pretraining"}
    with gin.unlock_config():
        gin.parse_config("MixtureRecipe.pretraining_share = 0.5")
    try:
        r2 = mixtures.resolve_rates("mini_bench_train")  # recomputed with the gin recipe now in force
        assert r2["mini_bench_pretraining_world_text"] == pytest.approx(0.5)
        mix = seqio.get_mixture_or_task("mini_bench_train")
        task = seqio.get_mixture_or_task("mini_bench_pretraining_world_text")
        assert mix.get_rate(task) == pytest.approx(0.5)
    finally:
        gin.clear_config()
        mixtures.resolve_rates("mini_bench_train")
