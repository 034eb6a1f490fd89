"""13-gram leakage: constructed overlaps and the real NIv2/CoT files."""

import json

import numpy as np

from optiml_jax.tasks import leakage

WORDS = [f"w{i}" for i in range(1000)]


def _ex(text):
    return {"input": text, "target": ""}


def test_ngram_hashes_normalize_case_and_whitespace():
    a = leakage.ngram_hashes("A  b c d e f g h i j k l m n")
    b = leakage.ngram_hashes("a b\tc d e f g h i j k l m N")
    assert a.dtype == np.uint64 and len(a) == 2 and np.array_equal(a, b)
    assert len(leakage.ngram_hashes("too short text")) == 0


def test_constructed_overlap_flags_only_leaking_pair(tmp_path):
    shared = " ".join(WORDS[:20])
    train = {"t_leaky": [_ex(f"intro {shared} outro")], "t_clean": [_ex(" ".join(WORDS[500:560]))]}
    # 2 of 100 eval examples contain the shared 20-gram -> 2% > 1%; 12-token overlaps never count
    eval_ex = [_ex(" ".join(WORDS[100 + i:130 + i])) for i in range(98)] + [_ex(shared), _ex("x " + shared)]
    eval_ex[0] = _ex(" ".join(WORDS[500:512]) + " zzz")  # shares only 12 tokens with t_clean
    rep = leakage.find_leaks(train, {"e": eval_ex})
    assert [(p["train"], p["eval"], p["overlapping_examples"]) for p in rep["pairs"]] == [("t_leaky", "e", 2)]
    assert abs(rep["pairs"][0]["overlap_fraction"] - 0.02) < 1e-9
    rep_one = leakage.find_leaks(train, {"e": eval_ex[:99]})  # 1 of 99 is ~1.01% -> still flagged
    assert len(rep_one["pairs"]) == 1
    rep_low = leakage.find_leaks(train, {"e": eval_ex[:98] + [_ex("a b")] * 50 + [_ex(shared)]})  # 1/149 < 1%
    assert rep_low["pairs"] == []
    jp, mp = leakage.write_report(rep, tmp_path / "r")
    assert json.loads(jp.read_text())["pairs"][0]["train"] == "t_leaky" and "t_leaky" in mp.read_text()


def test_cli_on_real_niv2_and_cot(shared_data, tmp_path):
    rep = leakage.main(["--train", str(shared_data / "niv2" / "tasks"), str(shared_data / "flan" / "cot_data"),
                        "--eval", str(shared_data / "niv2" / "tasks"), "--max-examples", "300",
                        "--out", str(tmp_path / "leak")])
    assert rep["train_tasks"] == 12 and rep["eval_tasks"] == 5
    flagged = {(p["train"], p["eval"]) for p in rep["pairs"]}
    # a task compared with itself leaks; distinct real tasks of different sources do not
    assert ("niv2_task062_bigbench_repeat_copy_logic", "niv2_task062_bigbench_repeat_copy_logic") in flagged
    assert all(tr == ev for tr, ev in flagged)
    assert (tmp_path / "leak.md").exists()


TEMPLATE = "please read the following sentence very carefully and then answer the question that comes after it :"


def _templated(words):
    return _ex(f"{TEMPLATE} {' '.join(words)}")


def test_a_tasks_own_template_is_not_overlap_but_a_copied_instance_is():
    train = {"t_tpl": [_templated(WORDS[i * 15:(i + 1) * 15]) for i in range(40)]}
    evals = [_templated(WORDS[600 + i * 15:600 + (i + 1) * 15]) for i in range(25)]  # same template, new instances
    # the plain 13-gram check flags every eval example: the template alone is 17 tokens
    assert leakage.find_leaks(train, {"e_tpl": evals}, template_share=None)["pairs"][0]["overlap_fraction"] == 1.0
    rep = leakage.find_leaks(train, {"e_tpl": evals})
    assert rep["pairs"] == [] and rep["template_ngrams_ignored"]["train"] > 0 and rep["template_ngrams_ignored"]["eval"] > 0
    copied = evals + [_templated(WORDS[7 * 15:8 * 15])]  # instance 7 of the train task, verbatim
    rep = leakage.find_leaks(train, {"e_tpl": copied})
    assert [(p["train"], p["overlapping_examples"], p["eval_examples"]) for p in rep["pairs"]] == [("t_tpl", 1, 26)]


def test_a_multi_template_classification_task_is_not_overlap_with_itself_but_a_copy_is():
    """Two templates and five class labels (the mini-benchmark's word_category shape): a template n-gram that runs
    into the label ("... ||| vehicle tool") is shared by every example with that label; it is neither template-
    frequent nor a copy. A verbatim copy of one train instance is still caught."""
    labels = ["animal", "color", "food", "tool", "vehicle"]
    choices = "Choices: " + " ||| ".join(labels)
    templates = ["Word: {w}\nWhich category does this word belong to?\n" + choices,
                 "What kind of thing is a {w}?\n" + choices]

    def examples(words):
        return [{"input": templates[i % 2].format(w=w), "target": labels[i % 5]} for i, w in enumerate(words)]

    train = {"wc": examples(WORDS[:32])}
    evals = examples(WORDS[100:120])
    assert leakage.find_leaks(train, {"wc_eval": evals})["pairs"] == []
    rep = leakage.find_leaks(train, {"wc_eval": evals + [train["wc"][5]]})
    assert [(p["overlapping_examples"], p["eval_examples"]) for p in rep["pairs"]] == [(1, 21)]


def test_the_report_names_each_flagged_example_its_closest_train_example_and_the_shared_ngrams(tmp_path):
    # planted by hand: eval example "e-leak" copies w0..w15 from train example "t-source" (4 shared 13-grams);
    # "t-decoy" shares only the first of them; everything else is disjoint
    passage = " ".join(WORDS[:16])
    train = {"t": [_ex(" ".join(WORDS[0:13]) + " decoy ending"), _ex(f"intro {passage}")]
             + [_ex(" ".join(WORDS[200 + 20 * i:215 + 20 * i])) for i in range(8)]}
    train["t"][0]["id"], train["t"][1]["id"] = "t-decoy", "t-source"
    evals = [dict(_ex(f"lead {passage} tail"), id="e-leak")] + [_ex(" ".join(WORDS[600 + 20 * i:615 + 20 * i]))
                                                                for i in range(9)]
    rep = leakage.find_leaks(train, {"e": evals})
    [pair] = rep["pairs"]
    assert (pair["train"], pair["eval"], pair["overlapping_examples"]) == ("t", "e", 1)
    [ev] = pair["evidence"]
    assert ev["eval_id"] == "e-leak" and ev["train_id"] == "t-source" and ev["shared_ngram_count"] == 4
    assert ev["shared_ngrams"] == ["w0 w1 w2 w3 w4 w5 w6 w7 w8 w9 w10 w11 w12",
                                   "w1 w2 w3 w4 w5 w6 w7 w8 w9 w10 w11 w12 w13",
                                   "w2 w3 w4 w5 w6 w7 w8 w9 w10 w11 w12 w13 w14"]
    assert ev["eval_text"].startswith("lead w0 w1") and ev["train_text"].startswith("intro w0 w1")
    jp, mp = leakage.write_report(rep, tmp_path / "r")
    assert json.loads(jp.read_text())["pairs"][0]["evidence"] == [ev]
    md = mp.read_text()
    assert "### t -> e (1 of 1 shown)" in md and "eval `e-leak`: lead w0 w1" in md
    assert "closest train `t-source` (4 shared): intro w0" in md
    assert '  - shared: "w0 w1 w2 w3 w4 w5 w6 w7 w8 w9 w10 w11 w12"' in md
    # an example without an id is named by its task and position; the evidence is capped per pair
    two = [_ex(f"lead {passage} tail"), _ex(f"other {passage}")] + evals[1:]
    [pair] = leakage.find_leaks(train, {"e": two}, evidence_per_pair=1)["pairs"]
    assert pair["overlapping_examples"] == 2 and [e["eval_id"] for e in pair["evidence"]] == ["e[0]"]
