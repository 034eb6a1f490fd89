"""Training mixtures exclude every evaluation task of the chosen split automatically: no held-out category, no
held-out task, no task sharing a held-out task's data source and no fully supervised task's evaluation instances
ever reach the training stream (checked by decoding the packed batches, not only by the stream's bookkeeping)."""

import json
import re

import gin
import numpy as np
import pytest

import optiml_jax.tasks.opt_iml_bench as opt_iml_bench
from optiml_jax.testing.source_files import (OPT_IML_BENCH_GIN, MINI_TOKENIZER, NIV2_HELD_OUT_CATEGORY, NIV2_HELD_OUT_TASK,
                                 NIV2_SHARED_SOURCE, NIV2_TRAIN, marker, write_cot_tsv, write_jsonl, write_niv2_task)
from optiml_jax.tasks import mixtures, registry

MARKER = re.compile(r"mk([a-z0-9]+?)x\d+")


@pytest.fixture
def opt_iml_bench_data(tmp_path):
    niv2, cot = tmp_path / "niv2", tmp_path / "cot"
    for stem in NIV2_TRAIN + NIV2_HELD_OUT_CATEGORY + NIV2_HELD_OUT_TASK + NIV2_SHARED_SOURCE:
        write_niv2_task(niv2, stem, n=40)
    write_cot_tsv(cot, "creak", n=40)
    write_cot_tsv(cot, "gsm8k", n=40)  # partially supervised (validation) under opt_iml_paper
    spider = {s: str(write_jsonl(tmp_path / "spider" / f"{s}.jsonl",
                                 [{"src": f"Write SQL for {marker('spider' + s, i)}", "tgt": f"SELECT {i}"}
                                  for i in range(20)])) for s in ("train", "test")}
    bindings = [f"NIV2_DATA_DIR = '{niv2}'", f"COT_DATA_DIR = '{cot}'", f"OPT_TOKENIZER_DIR = '{MINI_TOKENIZER}'",
                f"EXTRA_JSONL_SOURCES = {{'skg_spider': {spider!r}}}", "EVAL_EXAMPLES = 10"]
    gin.clear_config()
    yield bindings
    gin.clear_config()


def _decoded_tags(batch, vocab) -> set[str]:
    """Marker tags in every packed segment's text (source and target)."""
    tags = set()
    for tgt, seg in zip(batch["decoder_target_tokens"], batch["decoder_segment_ids"]):
        for sid in range(1, int(seg.max()) + 1):
            ids = [int(t) for t in tgt[seg == sid] if t not in (vocab.eos_id, vocab.pad_id)]
            tags |= set(MARKER.findall(vocab.decode(ids)))
    return tags


def test_no_held_out_data_reaches_the_training_stream(opt_iml_bench_data):
    # the one training stream: the mixture's name registers the gin-configured OPT-IML Bench, then it is read
    from optiml_jax.data.stream import get_train_stream

    gin.parse_config_files_and_bindings([str(OPT_IML_BENCH_GIN)], opt_iml_bench_data)

    stream = get_train_stream(mixture_or_task_name="opt_iml_bench_train", task_feature_lengths=256,
                              batch_size=4, seed=3)
    trainable = {"niv2_" + s for s in NIV2_TRAIN} | {"cot_creak", "skg_spider"}
    assert set(stream.task_names) == trainable
    # exclusion is the mixture builder's doing: the shared-source task has data to train on, held-out ones do not
    assert set(registry.get_task("niv2_" + NIV2_SHARED_SOURCE[0]).splits) == {"train"}
    for stem in NIV2_HELD_OUT_CATEGORY + NIV2_HELD_OUT_TASK:
        assert set(registry.get_task("niv2_" + stem).splits) == {"test"}
    assert set(registry.get_task("skg_spider").splits) == {"train", "test"}  # fully supervised

    allowed_tags = {s.split("_")[0] for s in NIV2_TRAIN} | {"creak", "spidertrain"}
    forbidden_tags = ({s.split("_")[0] for s in NIV2_HELD_OUT_CATEGORY + NIV2_HELD_OUT_TASK + NIV2_SHARED_SOURCE}
                      | {"gsm8k", "spidertest"})
    seen_tags, seen_tasks, examples = set(), set(), 0
    for step in range(40):
        batch, stats = stream.get_batch_with_stats(step)
        assert batch["decoder_target_tokens"].shape == (4, 256)
        seen_tasks |= set(stats.per_task)
        seen_tags |= _decoded_tags(batch, stream.vocabulary)
        examples += stats.examples
    assert examples > 400
    assert seen_tasks <= trainable and not seen_tags & forbidden_tags, seen_tags & forbidden_tags
    assert seen_tags == allowed_tags  # every trainable task's data did show up (the check can see markers)


def test_the_split_decides_what_is_excluded(opt_iml_bench_data):
    gin.parse_config_files_and_bindings([str(OPT_IML_BENCH_GIN)], opt_iml_bench_data + ["SPLIT_NAME = 'all_tasks'"])
    names = opt_iml_bench.register_opt_iml_bench()
    train = set(mixtures.resolve_rates("opt_iml_bench_train"))
    # OPT-IML-Max: nothing is held out, so every registered task trains (on all its instances)
    assert train == set(names) and len(names) == 2 + 3 + 1 + 1 + 2 + 1
    assert len(registry.load_raw_examples("niv2_" + NIV2_HELD_OUT_CATEGORY[0], "train")) == 40
    gin.clear_config()
    gin.parse_config_files_and_bindings([str(OPT_IML_BENCH_GIN)], opt_iml_bench_data)
    opt_iml_bench.register_opt_iml_bench()
    rates = mixtures.resolve_rates("opt_iml_bench_train")
    assert set(rates) == {"niv2_" + s for s in NIV2_TRAIN} | {"cot_creak", "skg_spider"}
    assert np.isclose(sum(rates.values()), 1.0)


def test_leakage_between_opt_iml_bench_training_mixture_and_paper_split(opt_iml_bench_data, tmp_path):
    from optiml_jax.cli.tasks import main

    passage = " ".join(f"p{i}" for i in range(16))
    with open(tmp_path / "cot" / "creak_train.tsv", "a") as f:
        f.write(f"Recall {passage}?\tyes\tIt was said.\n")
    gsm8k = tmp_path / "cot" / "gsm8k_train.tsv"
    gsm8k.write_text(f"What about {passage}?\tno\tIt was not.\n" + gsm8k.read_text())
    out = tmp_path / "leak"
    assert main(["leakage", "--train", "opt_iml_bench_train", "--eval", "opt_iml_paper", "--out", str(out),
                 "--gin_file", str(OPT_IML_BENCH_GIN), *[f"--gin.{b.replace(' = ', '=', 1)}" for b in opt_iml_bench_data]]) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    # gsm8k's evaluation instances are its first EVAL_EXAMPLES = 10 rows: 1 of 10 shares the passage
    assert [(p["train"], p["eval"], p["overlapping_examples"], p["eval_examples"]) for p in report["pairs"]] == [
        ("cot_creak", "cot_gsm8k", 1, 10)]
    assert report["eval_levels"]["niv2_task1152_bard_analogical_reasoning_causation"] == "fully_held_out"
    assert report["eval_levels"]["skg_spider"] == "fully_supervised" and report["train_tasks"] == 4


def test_counts_file_keeps_registration_lazy(opt_iml_bench_data, tmp_path):
    from optiml_jax.sources.raw_examples import SourceDataError

    stem = NIV2_TRAIN[0]
    (tmp_path / "niv2" / f"{stem}.json").write_text("{broken")
    counts = tmp_path / "counts.json"
    counts.write_text(json.dumps({f"niv2_{s}": {"train": 40} for s in NIV2_TRAIN}
                                 | {"cot_creak": {"train": 40}, "skg_spider": {"train": 20, "test": 20}}))
    gin.parse_config_files_and_bindings([str(OPT_IML_BENCH_GIN)], opt_iml_bench_data + [f"TASK_COUNTS_FILE = '{counts}'"])
    opt_iml_bench.register_opt_iml_bench()  # the broken training file is not read: its count comes from the file
    rates = mixtures.resolve_rates("opt_iml_bench_train")
    assert rates["niv2_" + NIV2_TRAIN[0]] == pytest.approx(rates["niv2_" + NIV2_TRAIN[1]])
    with pytest.raises(SourceDataError, match=f"not valid JSON.*{stem}.json"):
        registry.load_raw_examples("niv2_" + stem, "train")
