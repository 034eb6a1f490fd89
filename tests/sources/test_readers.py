"""Readers against the real files in ../shared/data and against small fixtures written in the same formats."""

import json

import pytest

from optiml_jax.sources import cot_reader
from optiml_jax.sources import flan_reader
from optiml_jax.sources import jsonl_reader
from optiml_jax.sources import niv2_reader
from optiml_jax.sources.local_datasets import find_split_file, iter_rows
from optiml_jax.sources.raw_examples import SourceDataError, check_raw_example


def _niv2_fixture(tmp_path, name="task900_demo", instances=None, extra=""):
    instances = instances if instances is not None else [
        {"id": "a", "input": "2+2", "output": ["4", "four"]}, {"id": "b", "input": "3+3", "output": ["6"]}]
    body = json.dumps({"Definition": ["Add the numbers."], "Categories": ["Mathematics"],
                       "Positive Examples": [{"input": "1+1", "output": "2", "explanation": "sum"}],
                       "Instances": instances})
    p = tmp_path / f"{name}.json"
    p.write_text(body[:-1] + extra + "}")
    return p


def test_niv2_fixture_fields_and_references(tmp_path):
    task = niv2_reader.load_task(_niv2_fixture(tmp_path, extra=', "URL": [NaN]'))
    assert task.name == "niv2_task900_demo"
    assert task.demonstrations == ({"input": "1+1", "target": "2", "explanation": "sum"},)
    exs = [check_raw_example(e) for e in task.examples()]
    assert exs[0]["instruction"] == "Add the numbers." and exs[0]["target"] == "4"
    assert exs[0]["references"] == ["4", "four"] and exs[1]["id"] == "b" and exs[0]["options"] == []


def test_niv2_bad_inputs_name_file_task_example(tmp_path):
    with pytest.raises(SourceDataError, match="task901_empty"):
        niv2_reader.load_task(_niv2_fixture(tmp_path, "task901_empty", instances=[]))
    broken = tmp_path / "task902_broken.json"
    broken.write_text('{"Definition": ["x"], "Instances": [')
    with pytest.raises(SourceDataError, match="not valid JSON.*task902_broken"):
        niv2_reader.load_task(broken)
    bad = niv2_reader.load_task(_niv2_fixture(tmp_path, "task903_bad", instances=[
        {"id": "ok", "input": "x", "output": ["y"]}, {"id": "bad-1", "input": "x"}]))
    with pytest.raises(SourceDataError, match="example='bad-1'"):
        list(bad.examples())
    with pytest.raises(SourceDataError, match="does not exist"):
        list(niv2_reader.read_niv2_tasks(tmp_path / "missing"))


def test_niv2_real_files(shared_data):
    tasks = {t.name: t for t in niv2_reader.read_niv2_tasks(shared_data / "niv2" / "tasks")}
    assert len(tasks) == 5 and "niv2_task1149_item_check_edible" in tasks  # the NaN file parses
    for t in tasks.values():
        exs = [check_raw_example(e, task=t.name) for e in t.examples()]
        assert len(exs) == len(t.instances) > 0 and all(e["instruction"] == t.definition for e in exs)
        assert len(t.demonstrations) > 0
    multi = [e for e in tasks["niv2_task1152_bard_analogical_reasoning_causation"].examples()]
    assert all(e["target"] == e["references"][0] for e in multi)


def test_cot_target_is_rationale_then_answer(tmp_path):
    p = tmp_path / "toy_train.tsv"
    p.write_text("What is 2+3?\t5\t2 plus 3 is 5.\nIs snow cold?\tyes\tSnow is frozen water.\n")
    exs = list(cot_reader.read_cot_tsv(p))
    assert exs[0]["target"] == "2 plus 3 is 5. So the answer is 5." and exs[0]["input"] == "What is 2+3?"
    assert exs[0]["instruction"] == cot_reader.COT_INSTRUCTION and exs[1]["id"] == "cot_toy-2"
    bad = tmp_path / "bad_train.tsv"
    bad.write_text("q\t1\tr\nonly two\tfields\n")
    with pytest.raises(SourceDataError, match="line 2"):
        list(cot_reader.read_cot_tsv(bad))


def test_cot_real_files(shared_data):
    files = cot_reader.cot_files(shared_data / "flan" / "cot_data")
    assert set(files) == {f"cot_{n}" for n in ("aqua", "creak", "ecqa", "gsm8k", "qasc", "sensemaking", "strategyqa")}
    total = sum(sum(1 for _ in cot_reader.read_cot_tsv(p, name)) for name, p in files.items())
    assert total == 33443


def test_flan_options_and_inverted_templates(tmp_path):
    pats = [["{premise}\nCan we conclude {hypothesis}?\n{options_}", "{answer}"],
            ["{premise} => {hypothesis}? {options_}", "{answer}"],
            ["Generate a context.", "Context: {premise}"]]
    assert len(flan_reader.original_templates([tuple(p) for p in pats])) == 2
    rows = [{"premise": "It rains.", "hypothesis": "It is wet", "options": ["yes", "no"], "answer": "yes"}]
    exs = list(flan_reader.read_flan_task([tuple(p) for p in pats], rows, task="flan_rte", all_templates=True))
    assert len(exs) == 2
    assert exs[0]["input"] == "It rains.\nCan we conclude It is wet?\nOPTIONS:\n- yes\n- no"
    assert exs[0]["target"] == "yes" and exs[0]["options"] == ["yes", "no"]
    with pytest.raises(SourceDataError, match="hypothesis.*flan_rte.*flan_rte-0"):
        list(flan_reader.read_flan_task([tuple(p) for p in pats], [{"premise": "p", "answer": "a", "options": []}],
                                        task="flan_rte"))


def test_flan_real_templates_format(shared_data):
    for fname in ("flan2021_patterns.json", "flan_v2_templates.json"):
        patterns = flan_reader.load_patterns(shared_data / "flan" / fname)
        assert len(patterns) >= 61
        for ds, pats in patterns.items():
            for inp, tgt in flan_reader.original_templates(pats):
                fields = flan_reader.template_fields(inp) | flan_reader.template_fields(tgt)
                row = {f: f"<{f}>" for f in fields if f != "options_"} | {"options": ["a", "b"]}
                i, t = flan_reader.apply_template(inp, tgt, row, task=ds)
                assert "{" + "answer" + "}" not in t and t


def test_src_tgt_jsonl_and_local_formats(tmp_path):
    p = tmp_path / "train.jsonl"
    p.write_text('{"src": "Is the text by GPT-2?", "tgt": "no"}\n{"src": "", "tgt": "plain text"}\n')
    exs = list(jsonl_reader.read_src_tgt_jsonl(p, task="exmix_gpt2", instruction="Detect GPT-2 text."))
    assert [e["target"] for e in exs] == ["no", "plain text"] and exs[1]["input"] == ""
    (tmp_path / "bad.jsonl").write_text('{"src": "x"}\n')
    with pytest.raises(SourceDataError, match="line 1"):
        list(jsonl_reader.read_src_tgt_jsonl(tmp_path / "bad.jsonl", task="t"))
    import pyarrow as pa
    import pyarrow.parquet as pq
    d = tmp_path / "ds"
    d.mkdir()
    pq.write_table(pa.table({"a": [1, 2]}), d / "validation.parquet")
    assert [r["a"] for r in iter_rows(find_split_file(d, "validation"))] == [1, 2]
    with pytest.raises(SourceDataError, match="no file for split 'train'"):
        find_split_file(d, "train")
