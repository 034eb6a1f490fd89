"""The training stream: batch contract, determinism, sharding, labels, truncation, MetaICL, eval batches."""

import collections

import numpy as np
import pytest

from optiml_jax.data import MetaICLConfig, get_eval_batches, get_train_stream
from optiml_jax.data.packing import FEATURES
from optiml_jax.tasks import registry


def _segments(batch, row):
    seg = batch["decoder_segment_ids"][row]
    for s in range(1, seg.max() + 1):
        m = seg == s
        yield batch["decoder_target_tokens"][row][m], batch["decoder_loss_weights"][row][m]


def test_batch_contract(small_mixture):
    b = get_train_stream(small_mixture, {"targets": 256}, batch_size=4, seed=0).get_batch(0)
    assert set(b) == set(FEATURES)
    for k, v in b.items():
        assert v.shape == (4, 256), k
        assert v.dtype == (np.float32 if k == "decoder_loss_weights" else np.int32), k
    pad = b["decoder_segment_ids"] == 0
    assert (b["decoder_target_tokens"][pad] == 1).all() and (b["decoder_loss_weights"][pad] == 0).all()
    assert set(np.unique(b["decoder_loss_weights"])) <= {0.0, 1.0}


def test_pure_function_of_seed_step_shard(small_mixture):
    s1 = get_train_stream(small_mixture, 256, batch_size=4, seed=3)
    s2 = get_train_stream(small_mixture, 256, batch_size=4, seed=3)
    for step in (5, 0, 5):  # order and a fresh object do not matter
        a, b = s1.get_batch(step), s2.get_batch(step)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    differ = lambda x, y: not np.array_equal(x["decoder_target_tokens"], y["decoder_target_tokens"])  # noqa: E731
    assert differ(s1.get_batch(0), s1.get_batch(1))
    assert differ(s1.get_batch(0), get_train_stream(small_mixture, 256, batch_size=4, seed=4).get_batch(0))
    h0 = get_train_stream(small_mixture, 256, batch_size=4, seed=3, shard_index=0, num_shards=2)
    h1 = get_train_stream(small_mixture, 256, batch_size=4, seed=3, shard_index=1, num_shards=2)
    assert h0.get_batch(0)["decoder_target_tokens"].shape == (2, 256)
    assert differ(h0.get_batch(0), h1.get_batch(0))


def test_reading_tasks_when_first_drawn_gives_the_same_batches(small_mixture):
    from optiml_jax.data.stream import TrainStream

    lazy = TrainStream(small_mixture, 64, 1, seed=2, read_all_tasks_first=False)
    batch, stats = lazy.get_batch_with_stats(0)
    assert lazy.tasks_read == sorted(stats.drawn)  # only what step 0 drew
    eager = TrainStream(small_mixture, 64, 1, seed=2, read_all_tasks_first=True)
    for step in (0, 3):
        a, b = eager.get_batch(step), lazy.get_batch(step)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    assert eager.tasks_read == eager.task_names


@pytest.mark.parametrize("group_rows", [1, 2])
def test_global_batch_does_not_depend_on_the_number_of_hosts(small_mixture, group_rows):
    """1, 2 or 4 hosts reading the same step produce, concatenated, the same global batch (so a run resumed
    on another number of hosts continues with the same data)."""
    def global_batch(hosts, step):
        parts = [get_train_stream(small_mixture, 256, batch_size=4, seed=3, shard_index=h, num_shards=hosts,
                                  packing_group_rows=group_rows).get_batch(step) for h in range(hosts)]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    for step in (0, 7):
        one = global_batch(1, step)
        for hosts in (2, 4 // group_rows):
            other = global_batch(hosts, step)
            for k in one:
                np.testing.assert_array_equal(other[k], one[k], err_msg=f"{k}, {hosts} hosts, step {step}")
    assert (one["decoder_segment_ids"] > 0).mean() > 0.5  # real packed rows, not all padding


def test_packing_groups_must_split_over_hosts(small_mixture):
    with pytest.raises(ValueError, match="packing_group_rows=3 must be >= 1 and divide"):
        get_train_stream(small_mixture, 256, batch_size=4, packing_group_rows=3)
    with pytest.raises(ValueError, match="cannot be split evenly over 4 hosts"):
        get_train_stream(small_mixture, 256, batch_size=4, shard_index=0, num_shards=4, packing_group_rows=2)


def test_labels_are_exactly_the_targets_tokens(small_mixture, mini_bench):
    vocab = mini_bench.VOCABULARY
    stream = get_train_stream(small_mixture, 512, batch_size=2, seed=0)
    targets = {}
    for t in stream.task_names:
        for ex in registry.load_raw_examples(t, "train"):
            targets.setdefault(ex["target"], ex)
    seen = 0
    for ids, w in _segments(stream.get_batch(0), 0):
        assert ids[-1] == 2 and w[-1] == 1  # every example ends with a labelled </s>
        label = ids[w > 0][:-1].tolist()
        target = vocab.decode(label)
        assert target.startswith(" ") and target[1:] in targets
        assert label == list(vocab.encode(target))  # label ids == encode(" " + target)
        assert (w[: np.argmax(w > 0)] == 0).all() and (w[np.argmax(w > 0):] == 1).all()  # source first, then labels
        seen += 1
    assert seen > 3


def test_rates_follow_the_mixture(small_mixture):
    stream = get_train_stream(small_mixture, 512, batch_size=8, seed=0)
    assert stream.rates["mini_bench_niv2_multiply"] == pytest.approx(0.4)
    counts = collections.Counter()
    for step in range(6):
        counts.update(stream.get_batch_with_stats(step)[1].per_task)
    total = sum(counts.values())
    assert counts["mini_bench_niv2_multiply"] / total == pytest.approx(0.4, abs=0.06)


def test_left_truncation_is_counted_and_keeps_the_end(small_mixture):
    stream = get_train_stream("mini_bench_reasoning_multiply", 24, batch_size=2, seed=0)
    batch, stats = stream.get_batch_with_stats(0)
    assert stats.truncated > 0 and stats.examples >= 2
    segs = [seg for r in range(2) for seg in _segments(batch, r)]
    assert any(len(ids) == 24 for ids, _ in segs)  # reasoning examples are longer than 24: cut to fit
    assert all(ids[-1] == 2 and w[-1] == 1 for ids, w in segs)  # the cut is on the left: </s> and answer kept


def test_broken_example_raises_naming_task(mini_bench):
    from optiml_jax.tasks.formatting import BrokenExampleError
    from optiml_jax.tasks.metadata import TaskInfo

    info = TaskInfo("test_broken_task", "niv2", "arithmetic", instruction_type="task")
    rows = [{"instruction": "Add.", "input": "1 + 1", "target": "2"}, {"instruction": "Add.", "input": "2 + 2", "target": ""}]
    registry.register_instruction_task(info, {"train": lambda: rows}, mini_bench.VOCABULARY, replace=True)
    try:
        with pytest.raises(BrokenExampleError, match=r"test_broken_task.*test_broken_task-train-1.*empty target"):
            get_train_stream("test_broken_task", 64, batch_size=1).get_batch(0)
    finally:  # a broken task left registered would break every later test that lists or reads all tasks
        registry.unregister_task("test_broken_task")


def test_metaicl_demonstrations_and_suffix_loss(mini_bench):
    vocab = mini_bench.VOCABULARY
    name = "mini_bench_niv2_multiply"
    plain = get_train_stream(name, 512, batch_size=2, seed=1)
    target = get_train_stream(name, 512, batch_size=2, seed=1, metaicl=MetaICLConfig(share=1.0, zipf_a=0.5))
    suffix = get_train_stream(name, 512, batch_size=2, seed=1,
                              metaicl=MetaICLConfig(share=1.0, zipf_a=0.5, loss="suffix"))
    texts = [vocab.decode(ids.tolist()) for ids, _ in _segments(target.get_batch(0), 0)]
    definition = "Multiply the two numbers and give the product."
    multi = [t for t in texts if t.count("Input:") > 1]
    assert multi, "zipf a=0.5 must give k-shot examples"
    for t in multi:  # task-level: one definition, then demonstrations separated by three newlines
        assert t.startswith(definition) and t.count(definition) == 1 and "\n\n\nInput:" in t
    frac = lambda s: float(np.mean([w.mean() for _, w in _segments(s.get_batch(0), 0)]))  # noqa: E731
    assert frac(suffix) > frac(target) and frac(plain) > 0
    # standard loss: exactly one labelled span (the final target) per MetaICL example
    for ids, w in _segments(target.get_batch(0), 0):
        assert np.count_nonzero(np.diff(w) == 1) == 1


def test_eval_batches_cover_each_example_once(small_mixture, mini_bench):
    name = "mini_bench_flan_sentiment"
    n = len(registry.load_raw_examples(name, "validation"))
    per_host = [get_eval_batches(name, 128, batch_size=4, split="validation", shard_index=s, num_shards=2)
                for s in range(2)]
    assert len(per_host[0]) == len(per_host[1]) >= 1
    total = sum(int(b["decoder_segment_ids"].max(axis=1).sum()) for host in per_host for b in host)
    assert total == n
    again = get_eval_batches(name, 128, batch_size=4, split="validation", shard_index=1, num_shards=2)
    for a, b in zip(again, per_host[1]):
        np.testing.assert_array_equal(a["decoder_target_tokens"], b["decoder_target_tokens"])
    assert all(b["decoder_target_tokens"].shape == (2, 128) for b in per_host[0])
