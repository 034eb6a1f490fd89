"""`python -m optiml_jax.tasks leakage --train MIXTURE --eval SPLIT` on registered fixture tasks, and `list` showing
the catalog's counts next to the paper's Table 1."""

import json
import pathlib
import re

import gin
import pytest

from optiml_jax.tasks import mixtures, registry
from optiml_jax.cli.tasks import main
from optiml_jax.tasks.metadata import GeneralizationSplit, TaskInfo
from optiml_jax.vocabularies import OPTVocabulary

REPO = pathlib.Path(__file__).resolve().parents[2]
WORDS = [f"w{i}" for i in range(400)]
SHARED = " ".join(WORDS[:20])  # a 20-token passage: shares many 13-grams


@pytest.fixture(autouse=True)
def _clean_gin():
    yield
    gin.clear_config()


def _write(path, examples):
    path.write_text("".join(json.dumps(dict(instruction="", references=[], options=[], **e)) + "\n" for e in examples))
    return registry.jsonl_split(path)


@pytest.fixture
def leak_fixture(tmp_path):
    """Train tasks A (contains SHARED), B (a 12-token overlap only) and S (fully supervised, clean test split);
    evaluation tasks X (2 of 10 validation examples contain SHARED) and Y (test split, 12-token overlap with B)."""
    vocab = OPTVocabulary(REPO / "optiml_jax" / "tasks" / "mini_bench" / "bpe")
    info = {n: TaskInfo(name=f"leakfix_{n}", collection="niv2", category=c)
            for n, c in (("a", "qa"), ("b", "qa"), ("s", "qa"), ("x", "heldcat"), ("y", "qa"))}
    train_a = [{"input": f"intro {SHARED} outro", "target": "t", "id": "a0"}] + [
        {"input": " ".join(WORDS[200 + i:215 + i]), "target": "t", "id": f"a{i}"} for i in range(1, 5)]
    train_b = [{"input": " ".join(WORDS[300:312]) + " end", "target": "t", "id": "b0"}]
    eval_x = [{"input": " ".join(WORDS[100 + 3 * i:114 + 3 * i]), "target": "t", "id": f"x{i}"} for i in range(8)]
    eval_x += [{"input": SHARED, "target": "t", "id": "x8"}, {"input": f"{WORDS[399]} {SHARED}", "target": "t",
                                                                  "id": "x9"}]
    eval_y = [{"input": " ".join(WORDS[300:312]) + " other words here", "target": "t", "id": "y0"}]
    sup_train = [{"input": " ".join(WORDS[50:70]), "target": "t", "id": "s0"}]
    sup_test = [{"input": " ".join(WORDS[70:90]), "target": "t", "id": "s1"}]
    splits = {"a": {"train": _write(tmp_path / "a.jsonl", train_a)},
              "b": {"train": _write(tmp_path / "b.jsonl", train_b)},
              "s": {"train": _write(tmp_path / "s_train.jsonl", sup_train),
                    "test": _write(tmp_path / "s_test.jsonl", sup_test)},
              "x": {"validation": _write(tmp_path / "x.jsonl", eval_x)},
              "y": {"test": _write(tmp_path / "y.jsonl", eval_y)}}
    for n, i in info.items():
        registry.register_instruction_task(i, splits[n], vocab, replace=True)
    registry.register_generalization_split(GeneralizationSplit(
        name="leakfix_split", fully_held_out_categories=frozenset({"heldcat"}),
        held_out_tasks=frozenset({"leakfix_y"}), supervised_eval_tasks=frozenset({"leakfix_s"})))
    mixtures.register_rate_mixture("leakfix_train", {"leakfix_a": 1.0, "leakfix_b": 1.0, "leakfix_s": 1.0})
    return tmp_path


def test_leakage_command_flags_only_the_constructed_overlap(leak_fixture, capsys):
    out = leak_fixture / "report" / "leak"
    assert main(["leakage", "--train", "leakfix_train", "--eval", "leakfix_split", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.with_suffix(".json").read_text())
    assert [(p["train"], p["eval"], p["overlapping_examples"], p["eval_examples"]) for p in report["pairs"]] == [
        ("leakfix_a", "leakfix_x", 2, 10)]
    assert report["pairs"][0]["overlap_fraction"] == pytest.approx(0.2)
    assert report["train_tasks"] == 3 and report["eval_tasks"] == 3  # x (validation), y (test), s (test split only)
    assert report["eval_levels"] == {"leakfix_s": "fully_supervised", "leakfix_x": "fully_held_out",
                                     "leakfix_y": "partially_supervised"}
    assert report["eval_split"] == "leakfix_split" and report["train_mixture"] == "leakfix_train"
    assert "| leakfix_a | leakfix_x | 20.0% | 2/10 |" in out.with_suffix(".md").read_text()
    assert "LEAK leakfix_a -> leakfix_x (fully_held_out): 20.0% (2/10)" in printed
    # the evidence: both flagged examples, the train example they copy, the first shared 13-gram
    first = " ".join(WORDS[:13])
    assert [(e["eval_id"], e["train_id"], e["shared_ngrams"][0]) for e in report["pairs"][0]["evidence"]] == [
        ("x8", "a0", first), ("x9", "a0", first)]
    assert f"e.g. eval x8 ~ train a0: '{first}'" in printed
    assert f'- eval `x9`: w399 {first}' in out.with_suffix(".md").read_text()
    # a lower n finds the 12-token overlap of B and Y too
    assert main(["leakage", "--train", "leakfix_train", "--eval", "leakfix_split", "--out", str(out),
                 "--ngram", "12"]) == 0
    pairs = {(p["train"], p["eval"]) for p in json.loads(out.with_suffix(".json").read_text())["pairs"]}
    assert pairs == {("leakfix_a", "leakfix_x"), ("leakfix_b", "leakfix_y")}


def test_leakage_command_bad_names(leak_fixture):
    with pytest.raises(SystemExit, match="unknown generalization split 'nope'"):
        main(["leakage", "--train", "leakfix_train", "--eval", "nope", "--out", str(leak_fixture / "r")])
    with pytest.raises(SystemExit, match="leakfix_x.*has no train split"):
        main(["leakage", "--train", "leakfix_x", "--eval", "leakfix_split", "--out", str(leak_fixture / "r")])


def test_list_shows_catalog_counts_next_to_paper_table1(capsys):
    assert main(["list", "--prefix", "mini_bench_t5_"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^mini_bench_t5_add\s", out, re.M)  # registered tasks still listed
    n_niv2 = len((REPO / "optiml_jax" / "tasks" / "catalog" / "niv2_tasks.tsv").read_text().strip().splitlines()) - 1
    # paper Table 1: NIv2 1613 tasks in 76 clusters, PromptSource 280/51, CrossFit 159/32 (not in the catalog)
    assert re.search(rf"^\| niv2 \| {n_niv2} \| 1613 \| \d+ \| 76 \| \d+ \| \d+ \| \d+ \| \d+ \|$", out, re.M), out
    assert re.search(r"^\| promptsource \| \d+ \| 280 \| \d+ \| 51 \|", out, re.M)
    assert re.search(r"^\| crossfit \| 0 \| 159 \| 0 \| 32 \| 0 \| 0 \| 0 \| 0 \|$", out, re.M)
    # OPT-IML Bench's splits: train 1545 tasks / 93 clusters, validation 35 / 7, test 87 / 10 in the paper
    for split, tasks, cats in (("train", 1545, 93), ("validation", 35, 7), ("test", 87, 10)):
        assert re.search(rf"^\| {split} \| \d+ \| {tasks} \| \d+ \| {cats} \|$", out, re.M), split
    assert "split 'opt_iml_paper'" in out
    assert main(["list", "--prefix", "mini_bench_t5_", "--no_catalog"]) == 0
    assert "1613" not in capsys.readouterr().out
