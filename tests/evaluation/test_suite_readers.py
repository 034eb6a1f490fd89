"""Readers of the evaluation suites (MMLU, BBH, RAFT, NIv2): real files from ../shared/data and small written fixtures."""

import json

import pytest

from optiml_jax.sources.raw_examples import SourceDataError
from optiml_jax.evaluation.suites import bbh, bbh_tasks, mmlu_tasks, niv2_tasks, raft_tasks


def test_mmlu_real_files(shared_data):
    tasks = mmlu_tasks(shared_data / "mmlu")
    assert len(tasks) == 57 and sum(len(t.examples) for t in tasks) == 14042
    t = tasks[0]
    assert t.group == "mmlu" and t.collection_name == "mmlu" and len(t.demonstrations) == 5
    assert t.is_rank_classification() and t.examples[0]["options"] == ["A", "B", "C", "D"]
    prompt = t.format_fn(t.examples[0], t.demonstrations)
    assert prompt.startswith("The following are multiple choice questions (with answers) about")
    assert prompt.count("\nAnswer:") == 6 and prompt.endswith("\nAnswer:")


def test_mmlu_bad_answer_names_the_file(tmp_path):
    for split in ("dev", "test"):
        (tmp_path / split).mkdir()
        (tmp_path / split / f"toy_{split}.csv").write_text(
            "question,choice0,choice1,choice2,choice3,answer\nq?,a,b,c,d,7\n")
    with pytest.raises(SourceDataError, match=r"toy_dev.csv.*mmlu_toy"):
        mmlu_tasks(tmp_path)


def test_bbh_real_files(shared_data):
    tasks = bbh_tasks(shared_data / "bbh")
    assert len(tasks) == 27 and sum(len(t.examples) for t in tasks) == 6511
    t = [t for t in tasks if t.name == "bbh_boolean_expressions"][0]
    prompt = t.format_fn(t.examples[0], [])
    assert "canary" not in prompt and prompt.count("Q: ") == 4
    assert prompt.endswith("A: Let's think step by step.") and t.fixed_shots == 3


def test_bbh_answer_extraction_and_missing_separator(tmp_path):
    assert bbh.bbh_answer("Step. So the answer is (C).\nQ: another question. So the answer is (A).") == "(C)"
    (tmp_path / "bbh").mkdir()
    (tmp_path / "cot-prompts").mkdir()
    (tmp_path / "bbh" / "toy.json").write_text(json.dumps({"examples": [{"input": "x", "target": "y"}]}))
    (tmp_path / "cot-prompts" / "toy.txt").write_text("canary line\nno separator\n")
    with pytest.raises(SourceDataError, match="toy.txt"):
        bbh_tasks(tmp_path)


def test_raft_real_files_hold_out_a_train_slice(shared_data):
    tasks = raft_tasks(shared_data / "raft", num_eval=10)
    assert len(tasks) >= 11
    for t in tasks:
        assert len(t.examples) == 10 and len(t.demonstrations) == 40
        assert not {e["id"] for e in t.examples} & {d["id"] for d in t.demonstrations}
        assert all(e["target"] in e["options"] for e in t.examples)


def test_raft_numeric_labels_and_unknown_label(tmp_path):
    d = tmp_path / "toy"
    d.mkdir()
    (d / "task.json").write_text(json.dumps({"data_columns": ["Text", "ID"], "label_columns": {"Label": ["neg", "pos"]}}))
    (d / "train.csv").write_text("Text,Label,ID\n" + "".join(f"t{i},{1 + i % 2},{i}\n" for i in range(12)))
    (t,) = raft_tasks(tmp_path, num_eval=2)
    assert [e["target"] for e in t.examples] == ["neg", "pos"]
    (d / "train.csv").write_text("Text,Label,ID\n" + "".join(f"t{i},maybe,{i}\n" for i in range(12)))
    with pytest.raises(SourceDataError, match="maybe"):
        raft_tasks(tmp_path)


def test_niv2_first_instances_and_positive_demonstrations(shared_data):
    tasks = niv2_tasks(shared_data / "niv2" / "tasks", categories=None, max_examples=100)
    assert len(tasks) == 5
    for t in tasks:
        assert 0 < len(t.examples) <= 100 and t.info.metric == "rouge_l" and t.info.instruction_type == "task"
        assert t.demonstrations and all(d["instruction"] == t.examples[0]["instruction"] for d in t.demonstrations)
    assert niv2_tasks(shared_data / "niv2" / "tasks") == []  # none of the 5 files is in the held-out categories
