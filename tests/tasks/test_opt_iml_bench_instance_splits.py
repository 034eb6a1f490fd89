"""OPT-IML Bench splits carved from one pool of instances (NIv2, CoT, a train-only dataset) are disjoint by
normalized input: a repeated instance never sits in both the evaluation and the training split."""

import json
import shutil

import pytest

import optiml_jax.tasks.opt_iml_bench as opt_iml_bench
from optiml_jax.tasks import registry
from optiml_jax.tasks.catalog import splits as catalog_splits
from optiml_jax.tasks.metadata import GeneralizationSplit
from optiml_jax.testing.source_files import MINI_TOKENIZER, NIV2_HELD_OUT_CATEGORY, write_jsonl, write_niv2_task


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def _supervised_split(monkeypatch, names):
    """A split under which `names` are fully supervised (trained on, with held-out instances)."""
    monkeypatch.setitem(catalog_splits.SPLITS, "supervised_for_test",
                        lambda tasks=None: GeneralizationSplit(name="supervised_for_test",
                                                               supervised_eval_tasks=frozenset(names)))


def _inputs(name, split):
    return [_norm(ex["input"]) for ex in registry.load_raw_examples(name, split)]


def test_a_repeated_instance_is_never_on_both_sides(tmp_path, monkeypatch):
    # hand-made pool: instance 1 comes back later (other case and spacing), instance 7 twice among the rest
    rows = [{"src": f"Write SQL for table {i}", "tgt": f"SELECT {i}"} for i in range(12)]
    rows.insert(9, {"src": "  write SQL   for TABLE 1 ", "tgt": "SELECT 1"})
    rows.append({"src": "Write SQL for table 7", "tgt": "SELECT 7"})
    spider = write_jsonl(tmp_path / "spider" / "train.jsonl", rows)
    opt_iml_bench.register_opt_iml_bench(jsonl_sources={"skg_spider": {"train": str(spider)}}, tokenizer_dir=str(MINI_TOKENIZER),
                                 eval_examples=4, mixture_prefix=None)  # Spider: fully supervised (paper split)
    test, train = _inputs("skg_spider", "test"), _inputs("skg_spider", "train")
    assert test == [_norm(f"Write SQL for table {i}") for i in range(4)]
    assert not set(test) & set(train), set(test) & set(train)
    # nothing else is lost: 14 rows = 4 evaluation + 9 training (table 7 twice) + the one repeat of table 1
    assert len(train) == 9 and train.count(_norm("Write SQL for table 7")) == 2

    # a held-out task's evaluation instances are distinct too: a repeat inside the first N is skipped
    niv2 = tmp_path / "niv2"
    path = write_niv2_task(niv2, NIV2_HELD_OUT_CATEGORY[0], n=8)
    body = json.loads(path.read_text())
    body["Instances"].insert(2, dict(body["Instances"][0], id="repeat"))
    path.write_text(json.dumps(body))
    opt_iml_bench.register_opt_iml_bench(niv2_data_dir=str(niv2), tokenizer_dir=str(MINI_TOKENIZER), eval_examples=5,
                                 mixture_prefix=None)
    held_out = _inputs("niv2_" + NIV2_HELD_OUT_CATEGORY[0], "test")
    assert len(held_out) == len(set(held_out)) == 5


def test_real_niv2_tasks_split_disjointly(shared_data, tmp_path, monkeypatch):
    files = sorted((shared_data / "niv2" / "tasks").glob("*.json"))[:3]
    assert files, "no NIv2 task files in the shared data"
    niv2 = tmp_path / "niv2"
    niv2.mkdir()
    for f in files:
        shutil.copy(f, niv2 / f.name)
    # one real instance duplicated at the end of the first file (the way NIv2 files repeat instances)
    body = json.loads((niv2 / files[0].name).read_text())
    body["Instances"].append(dict(body["Instances"][3], id="dup", input=body["Instances"][3]["input"].upper()))
    (niv2 / files[0].name).write_text(json.dumps(body))
    names = ["niv2_" + f.stem for f in files]
    _supervised_split(monkeypatch, names)
    got = opt_iml_bench.register_opt_iml_bench(niv2_data_dir=str(niv2), tokenizer_dir=str(MINI_TOKENIZER),
                                       split_name="supervised_for_test", eval_examples=20, mixture_prefix=None)
    assert sorted(got) == sorted(names)
    for f, name in zip(files, names):
        instances = json.loads((niv2 / f.name).read_text())["Instances"]
        distinct = {_norm(i["input"]) for i in instances}
        test, train = _inputs(name, "test"), _inputs(name, "train")
        assert len(test) == len(set(test)) == 20, name
        assert not set(test) & set(train), (name, sorted(set(test) & set(train))[:1])
        assert set(test) | set(train) == distinct, name  # every distinct instance is on one side
    first_train = _inputs(names[0], "train")
    assert len(first_train) == len(json.loads((niv2 / files[0].name).read_text())["Instances"]) - 20 - 1
