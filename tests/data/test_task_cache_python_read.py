"""Our tasks with only our preprocessors are read without tf.data (issue 23: a pipeline costs ~0.3-1 s a task to
build and trace, which made 2,000 tasks start in minutes); the arrays must be exactly what the task's seqio
pipeline yields, and any task with another preprocessor still goes through its pipeline."""

import collections

import numpy as np
import pytest

from optiml_jax.data import task_cache
from optiml_jax.tasks import registry
from optiml_jax.testing import register_fake_instruction_task, scratch_task

# one task of each layout the mini-benchmark has: task-level, instance-level, keyword, full-sequence loss (2)
# (the first in the default set; each runs a tf.data pipeline, so the others are slow-marked)
LAYOUTS = ["mini_bench_niv2_qa_town"] + [pytest.param(n, marks=pytest.mark.slow) for n in (
    "mini_bench_flan_antonym", "mini_bench_unifiedskg_table_qa", "mini_bench_dialogue_chat",
    "mini_bench_pretraining_world_text")]


def _both_reads(name, monkeypatch, split="train"):
    view = registry.get_task(name)
    monkeypatch.setattr(task_cache, "PYTHON_READS_OF_STANDARD_TASKS", False)
    through_tf = task_cache._read_dataset(view, split, False)
    monkeypatch.setattr(task_cache, "PYTHON_READS_OF_STANDARD_TASKS", True)
    return through_tf, task_cache._read_dataset(view, split, False)


def _assert_same(a, b):
    for field in ("ids", "weights", "offsets", "indices", "label_starts"):
        x, y = getattr(a, field), getattr(b, field)
        assert x.dtype == y.dtype, field
        np.testing.assert_array_equal(x, y, err_msg=field)
    assert a.raw == b.raw


@pytest.mark.parametrize("name", LAYOUTS)
def test_python_read_equals_the_seqio_pipeline(mini_bench, name, monkeypatch):
    assert registry.get_task(name).standard_pipeline
    through_tf, in_python = _both_reads(name, monkeypatch)
    assert len(in_python) > 20 and in_python.weights.min() == (1.0 if "dialogue" in name or "pretraining" in name
                                                              else 0.0)
    _assert_same(through_tf, in_python)


def test_python_read_equals_the_pipeline_with_a_llama_family_tokenizer(tmp_path, monkeypatch):
    from optiml_jax.testing.family_tokenizers import write_family_tokenizer
    from optiml_jax.testing.instruction_tasks import fake_instruction_examples
    from optiml_jax.vocabularies.directories import load_vocabulary

    rows = fake_instruction_examples(30, tag="llamaread")
    write_family_tokenizer(tmp_path / "tok", "llama3", [r["input"] + " " + r["target"] for r in rows])
    vocab = load_vocabulary(tmp_path / "tok")
    with scratch_task(register_fake_instruction_task("test_python_read_llama", rows, vocabulary=vocab)) as name:
        through_tf, in_python = _both_reads(name, monkeypatch)
        assert in_python.ids.max() >= 3 and len(in_python) == 30
        _assert_same(through_tf, in_python)


def test_a_task_with_its_own_preprocessor_is_read_through_its_pipeline():
    from optiml_jax.tasks.metadata import TaskInfo
    from optiml_jax.testing.instruction_tasks import fake_instruction_examples
    from optiml_jax.vocabularies import OPTVocabulary
    from optiml_jax.tasks.mini_bench.tokenizer import TOKENIZER_DIR

    def shout(ds):  # rewrites the raw target: a Python read of the raw examples would miss it
        import tensorflow as tf

        return ds.map(lambda ex: {**ex, "target": tf.strings.upper(ex["target"])})

    rows = fake_instruction_examples(6, tag="shout")
    info = TaskInfo("test_python_read_shout", "niv2", "fake_category", instruction_type="task")
    registry.register_instruction_task(info, {"train": lambda: rows}, OPTVocabulary(TOKENIZER_DIR), {"train": 6},
                                       replace=True, extra_preprocessors=[shout])
    with scratch_task(info.name) as name:
        assert not registry.get_task(name).standard_pipeline
        task_cache.forget_in_memory()
        pipe0 = collections.Counter(task_cache.PIPELINE_READS)
        tokens = task_cache.split_tokens(name, "train")
        assert task_cache.PIPELINE_READS - pipe0 == collections.Counter({name: 1})
        assert [r["target"] for r in tokens.raw] == [r["target"].upper() for r in rows]


@pytest.mark.parametrize("metaicl", [None, pytest.param("two_shots", marks=pytest.mark.slow)])
def test_a_stream_that_tokenizes_as_drawn_gives_the_batches_of_one_that_reads_whole_splits(small_mixture, metaicl):
    from optiml_jax.data.demonstrations import MetaICLConfig
    from optiml_jax.data.lazy_task_shard import LazyTaskShard
    from optiml_jax.data.stream import TrainStream

    config = MetaICLConfig(share=0.5, max_shots=2) if metaicl else None
    task_cache.forget_in_memory()
    lazy = TrainStream(small_mixture, 256, 4, seed=3, metaicl=config)
    whole = TrainStream(small_mixture, 256, 4, seed=3, metaicl=config, read_all_tasks_first=True)
    for step in range(4):
        a, b = lazy.get_batch(step), whole.get_batch(step)
        for k in b:
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"{k} at step {step}")
    shards = list(lazy.resident_shards().values())
    assert shards and all(isinstance(s, LazyTaskShard) for s in shards)
    tokenized = sum(s.tokens_read for s in shards)
    held = sum(int(s.offsets[-1]) for s in whole.resident_shards().values())
    assert 0 < tokenized < held / 2  # it tokenized the examples it drew, not the splits
    assert lazy.describe()["tasks_read"].keys() == whole.describe()["tasks_read"].keys()
