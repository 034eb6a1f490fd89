"""The training data path reads SeqIO: any seqio.Task or seqio.Mixture trains, through the task's own pipeline.

The user module here is written as seqio's README writes one (TextLineDataSource over a TSV, a parse
preprocessor, a preprocessor that visibly rewrites targets, tokenize, a metric_fn), imported the T5X way
(`MIXTURE_OR_TASK_MODULE`), never through an optiml_jax API.
"""

import collections
import importlib
import sys

import gin
import numpy as np
import pytest
import seqio

from optiml_jax.cli import gin_setup
from optiml_jax.data import task_cache
from optiml_jax.data.stream import get_train_stream
from optiml_jax.tasks import mixtures, registry
from optiml_jax.testing import (assert_batch_contract, register_fake_instruction_task, scratch_task, segments,
                                write_seqio_task_module)

MODULE = "user_seqio_tasks_for_tests"


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    rows = [(f"copy the word w{i}", f"w{i}") for i in range(40)]
    write_seqio_task_module(tmp_path, MODULE, "user_tsv_task", rows)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield MODULE
    for name in ("user_mixture",):
        if name in seqio.MixtureRegistry.names():
            seqio.MixtureRegistry.remove(name)
    if "user_tsv_task" in seqio.TaskRegistry.names():
        registry.unregister_task("user_tsv_task")
    sys.modules.pop(MODULE, None)
    gin.clear_config()


def _import_through_gin(module):
    """What `python -m optiml_jax.train --gin.MIXTURE_OR_TASK_MODULE=...` does before any task resolves."""
    gin_setup.parse_gin([], [f"MIXTURE_OR_TASK_MODULE = {module!r}"], check_required=False)


def _label_texts(batch, vocab):
    out = []
    for r in range(batch["decoder_segment_ids"].shape[0]):
        for tgt, _, w in segments(batch, r):
            out.append(vocab.decode([int(t) for t, x in zip(tgt, w) if x > 0 and t != vocab.eos_id]))
    return out


def test_a_seqio_readme_task_trains_on_its_preprocessed_targets(user_module):
    assert user_module not in sys.modules
    _import_through_gin(user_module)
    assert "user_tsv_task" in seqio.TaskRegistry.names()
    view = registry.get_task("user_tsv_task")
    assert not view.has_metadata and view.info.category == "user_tsv_task" and view.info.instruction_type == "instance"
    stream = get_train_stream("user_tsv_task", {"inputs": 64, "targets": 64}, batch_size=2, seed=0)
    batch = stream.get_batch(0)
    assert_batch_contract(batch, batch_size=2, length=128)
    labels = _label_texts(batch, view.vocabulary)
    assert labels and all(t.startswith("SHOUTED w") for t in labels), labels
    # the prompt (inputs) is there but carries no loss
    for r in range(2):
        for tgt, _, w in segments(batch, r):
            prompt = view.vocabulary.decode([int(t) for t, x in zip(tgt, w) if x == 0])
            assert prompt.startswith("copy the word w")


def test_training_reads_nothing_but_task_get_dataset(user_module, monkeypatch):
    # Our tasks with only our preprocessors are read in Python by default, with the ids get_dataset gives
    # (tests/data/test_task_cache_python_read.py, which also shows a task with any other preprocessor goes through
    # get_dataset); with that off, every read is get_dataset's
    monkeypatch.setattr(task_cache, "PYTHON_READS_OF_STANDARD_TASKS", False)
    _import_through_gin(user_module)
    name = register_fake_instruction_task("scratch_get_dataset_probe", n=6)
    with scratch_task(name):
        calls = collections.Counter()
        real = seqio.Task.get_dataset

        def counting(self, *a, **k):
            calls[self.name] += 1
            return real(self, *a, **k)

        monkeypatch.setattr(seqio.Task, "get_dataset", counting)
        get_train_stream(name, 64, batch_size=1).get_batch(0)
        assert calls[name] == 1  # read once, then served from the token cache

        def refuse(self, *a, **k):
            raise RuntimeError(f"get_dataset of {self.name} refused")

        registry.register_instruction_task(registry.get_task(name).info, registry.get_task(name).raw.splits,
                                           registry.get_task(name).vocabulary, replace=True)  # fresh caches
        monkeypatch.setattr(seqio.Task, "get_dataset", refuse)
        with pytest.raises(RuntimeError, match="get_dataset of scratch_get_dataset_probe refused"):
            get_train_stream(name, 64, batch_size=1).get_batch(0)


def test_a_preprocessor_added_to_a_project_task_changes_what_trains():
    import tensorflow as tf

    @seqio.map_over_dataset
    def bracket_targets(ex):  # runs on the raw fields, before the formatting
        return {**ex, "target": tf.strings.join(["[", ex["target"], "]"])}

    plain = register_fake_instruction_task("scratch_plain_targets", n=6)
    info, raw, vocab = registry.get_task(plain).info, registry.get_task(plain).raw, registry.get_task(plain).vocabulary
    with scratch_task(plain), scratch_task("scratch_bracketed_targets"):
        registry.register_instruction_task(dataclass_replace(info, name="scratch_bracketed_targets"), raw.splits,
                                           vocab, raw.num_examples, extra_preprocessors=[bracket_targets])
        before = _label_texts(get_train_stream(plain, 128, batch_size=1).get_batch(0), vocab)
        after = _label_texts(get_train_stream("scratch_bracketed_targets", 128, batch_size=1).get_batch(0), vocab)
    assert before and all(not t.lstrip().startswith("[") for t in before)
    assert after and all(t.startswith(" [") and t.endswith("]") for t in after), after  # label = " " + target


def dataclass_replace(obj, **kw):
    import dataclasses

    return dataclasses.replace(obj, **kw)


def test_project_tasks_get_dataset_yields_what_training_packs(mini_bench_registered):
    name = "mini_bench_niv2_multiply"
    view = registry.get_task(name)
    ds = view.seqio_task.get_dataset(sequence_length=None, split="train", shuffle=False, num_epochs=1,
                                     trim_output_features=False)
    first = next(ds.as_numpy_iterator())
    toks = task_cache.split_tokens(name, "train")
    ids, w = toks.example(0)
    assert ids.tolist() == first["inputs"].tolist() + first["targets"].tolist()
    assert w.tolist() == [0.0] * len(first["inputs"]) + [1.0] * len(first["targets"])
    assert first["targets"][-1] == view.vocabulary.eos_id
    raw = registry.load_raw_examples(name, "train")[0]
    assert view.vocabulary.decode(first["targets"][:-1].tolist()) == " " + raw["target"]


def test_a_mixture_of_a_plain_task_and_a_project_task_samples_at_the_seqio_rates(user_module):
    _import_through_gin(user_module)
    stream = get_train_stream("user_mixture", 1024, batch_size=4, seed=1)
    assert stream.rates == pytest.approx({"user_tsv_task": 0.75, "mini_bench_flan_sentiment": 0.25})
    drawn, placed = collections.Counter(), collections.Counter()
    for step in range(12):
        _, stats = stream.get_batch_with_stats(step)
        drawn.update(stats.drawn)
        placed.update(stats.per_task)
    # draws are multinomial at the seqio rates: the share is within 4 sigma of the binomial (n ~ 2,500 draws)
    n = sum(drawn.values())
    share, sigma = drawn["user_tsv_task"] / n, (0.75 * 0.25 / n) ** 0.5
    assert abs(share - 0.75) < 4 * sigma, (share, n)
    # what is packed can only differ by what did not fit (the longer examples are the ones left over)
    n_placed = sum(placed.values())
    assert abs(placed["user_tsv_task"] / n_placed - 0.75) < 4 * sigma + (n - n_placed) / n


def test_rates_of_nested_mixtures_and_rate_functions_follow_seqio(mini_bench_registered):
    a, b, c = "mini_bench_flan_sentiment", "mini_bench_niv2_multiply", "mini_bench_t5_add"
    names = ["test_inner_mixture", "test_outer_mixture", "test_default_rate_mixture"]
    try:
        seqio.MixtureRegistry.add(names[0], [(a, 1.0), (b, 3.0)])
        seqio.MixtureRegistry.add(names[1], [(names[0], 2.0), (c, 1.0)])
        # outer: inner gets 2 of 3, split 1:3 inside -> a 2/3*1/4, b 2/3*3/4, c 1/3
        assert mixtures.resolve_rates(names[1]) == pytest.approx({a: 1 / 6, b: 1 / 2, c: 1 / 3})
        seqio.MixtureRegistry.add(names[2], [a, b], default_rate=seqio.mixing_rate_num_examples)
        n_a, n_b = registry.num_examples(a), registry.num_examples(b)
        assert mixtures.resolve_rates(names[2]) == pytest.approx({a: n_a / (n_a + n_b), b: n_b / (n_a + n_b)})
    finally:
        for n in names:
            if n in seqio.MixtureRegistry.names():
                seqio.MixtureRegistry.remove(n)


def test_a_users_edit_of_a_recipe_mixture_is_never_overwritten(mini_bench_registered):
    assert mixtures.is_recipe_mixture("mini_bench_train")
    seqio.MixtureRegistry.remove("mini_bench_train")
    seqio.MixtureRegistry.add("mini_bench_train", [("mini_bench_flan_sentiment", 1.0), ("mini_bench_t5_add", 1.0)])
    try:
        with gin.unlock_config():
            gin.parse_config("MixtureRecipe.eps = 16")  # a recipe change must not touch the user's mixture
        assert mixtures.resolve_rates("mini_bench_train") == {"mini_bench_flan_sentiment": 0.5, "mini_bench_t5_add": 0.5}
        assert mixtures.recipe_rates("mini_bench_train") is None
        assert get_train_stream("mini_bench_train", 64, batch_size=1).rates == {"mini_bench_flan_sentiment": 0.5,
                                                                                 "mini_bench_t5_add": 0.5}
    finally:
        gin.clear_config()
        importlib.reload(importlib.import_module("optiml_jax.tasks.mini_bench.registration"))  # the recipe again
    assert mixtures.is_recipe_mixture("mini_bench_train")


def test_token_space_demonstrations_for_a_task_without_raw_text(user_module):
    from optiml_jax.data.demonstrations import MetaICLConfig

    _import_through_gin(user_module)
    vocab = registry.get_task("user_tsv_task").vocabulary
    stream = get_train_stream("user_tsv_task", 256, batch_size=2, seed=2,
                              metaicl=MetaICLConfig(share=1.0, zipf_a=0.5, max_shots=3))
    batch = stream.get_batch(0)
    assert_batch_contract(batch, batch_size=2, length=256)
    texts = [vocab.decode([int(t) for t in tgt if t != vocab.eos_id]) for r in range(2) for tgt, _, _ in segments(batch, r)]
    multi = [t for t in texts if t.count("copy the word") > 1]
    assert multi, texts  # demonstrations were prepended
    for t in multi:  # each demonstration is inputs + its (preprocessed) target, joined by the separator
        assert t.count("SHOUTED") == t.count("copy the word") and "\n\n\n" in t
    labels = _label_texts(batch, vocab)
    assert all(t.count("SHOUTED") == 1 for t in labels)  # the standard loss: the example's own target only


@pytest.fixture
def mini_bench_registered():
    import optiml_jax.tasks.mini_bench.registration  # noqa: F401

    yield
    gin.clear_config()


def test_use_cached_tasks_reads_the_seqio_cache(user_module, tmp_path):
    from optiml_jax.testing import write_seqio_cache

    _import_through_gin(user_module)
    vocab = registry.get_task("user_tsv_task").vocabulary
    cache = tmp_path / "seqio_cache"
    write_seqio_cache("user_tsv_task", cache, splits=("train",))
    with pytest.raises(task_cache.TaskDataError, match="user_tsv_task.*USE_CACHED_TASKS=True but no seqio cache"):
        get_train_stream("user_tsv_task", 128, batch_size=1, use_cached=True).get_batch(0)
    # the source changes after caching: the cached read still sees what was cached, the live read the new text
    (tmp_path / "user_tsv_task.tsv").write_text("".join(f"say v{i}\tv{i}\n" for i in range(40)))
    seqio.add_global_cache_dirs([str(cache)])
    try:
        cached = _label_texts(get_train_stream("user_tsv_task", 128, batch_size=1, use_cached=True).get_batch(0), vocab)
        live = _label_texts(get_train_stream("user_tsv_task", 128, batch_size=1, use_cached=False).get_batch(0), vocab)
    finally:
        seqio.set_global_cache_dirs([d for d in seqio.get_global_cache_dirs() if d != str(cache)])
    assert cached and all(t.startswith("SHOUTED w") for t in cached), cached
    assert live and all(t.startswith("SHOUTED v") for t in live), live


def _segments_of(batch, *, weights_key="decoder_loss_weights"):
    """Every packed example of a batch as a comparable tuple: (targets, inputs, weights, positions)."""
    out = []
    seg = np.asarray(batch["decoder_segment_ids"])
    for r in range(seg.shape[0]):
        for s in range(1, int(seg[r].max(initial=0)) + 1):
            m = seg[r] == s
            out.append((tuple(np.asarray(batch["decoder_target_tokens"])[r][m].tolist()),
                        tuple(np.asarray(batch["decoder_input_tokens"])[r][m].tolist()),
                        tuple(float(x) for x in np.asarray(batch[weights_key])[r][m]),
                        tuple(np.asarray(batch["decoder_positions"])[r][m].tolist())))
    return sorted(out)


def test_packed_batches_equal_seqios_decoder_feature_converter_up_to_opts_ids(user_module):
    """Same examples, packed by seqio.DecoderFeatureConverter(pack=True) (-> PrefixLM, loss on targets only) and
    by us: every packed example is identical except OPT's documented differences: the first input token of a
    segment is </s> = 2 (seqio shifts with 0), padding is 1 (seqio: 0), weights are float32 (seqio: int32), and
    seqio's extra `decoder_causal_attention` (we attend causally throughout, as OPT-IML trains)."""
    from optiml_jax.data import packing

    _import_through_gin(user_module)
    task = seqio.TaskRegistry.get("user_tsv_task")
    lengths = {"inputs": 24, "targets": 24}
    ds = task.get_dataset(sequence_length=lengths, split="train", shuffle=False).take(12)
    converted = seqio.DecoderFeatureConverter(pack=True)(ds, lengths)
    rows = [ex for ex in converted.as_numpy_iterator()]
    theirs = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
    assert set(theirs) == set(packing.FEATURES) | {"decoder_causal_attention"}
    assert theirs["decoder_loss_weights"].dtype == np.int32

    toks = task_cache.split_tokens("user_tsv_task", "train")
    ours, _ = packing.pack([toks.example(j) for j in range(12)], num_rows=len(rows), length=48)
    assert_batch_contract(ours)
    real = theirs["decoder_segment_ids"] > 0
    assert (theirs["decoder_target_tokens"][~real] == 0).all() and (ours["decoder_target_tokens"][ours["decoder_segment_ids"] == 0] == 1).all()
    mine = _segments_of(ours)
    seqio_segments = []
    for tgt, inp, w, pos in _segments_of(theirs):
        assert inp[0] == 0  # seqio's shift-right id; OPT's is </s>
        seqio_segments.append((tgt, (2,) + inp[1:], w, pos))
    assert mine == sorted(seqio_segments)


def test_the_shipped_example_module_trains_as_the_readme_says(monkeypatch):
    """tasks/example_seqio_tasks.py, imported by name from the repository root as the README's command does."""
    import pathlib

    repo = pathlib.Path(__file__).resolve().parents[2]
    monkeypatch.syspath_prepend(str(repo))
    try:
        _import_through_gin("tasks.example_seqio_tasks")
        view = registry.get_task("example_alphabet_order")
        assert view.has_metadata and view.info.category == "word_ordering"
        rates = mixtures.resolve_rates("example_mixture")
        assert rates["example_alphabet_order"] == pytest.approx(0.2)  # 1 part of 5; the other 4 nest the recipe
        assert len(rates) > 40 and sum(rates.values()) == pytest.approx(1.0)
        batch = get_train_stream("example_alphabet_order", 128, batch_size=2).get_batch(0)
        assert_batch_contract(batch, batch_size=2, length=128)
        assert all(t.strip() in ("candle cobalt ember fjord gazebo harbor juniper kettle lantern meadow mosaic orbit "
                                 "pebble prairie quartz river summit thimble violet willow").split()
                   for t in _label_texts(batch, view.vocabulary))
    finally:
        for m in ("example_mixture",):
            if m in seqio.MixtureRegistry.names():
                seqio.MixtureRegistry.remove(m)
        if "example_alphabet_order" in seqio.TaskRegistry.names():
            registry.unregister_task("example_alphabet_order")
        sys.modules.pop("tasks.example_seqio_tasks", None)
