"""Held-out PromptSource / FLAN templates that fail to render are reported (count, names, reasons: in the log and
as records for results.json), never dropped silently; a NaN input field is an error naming task and example.
The data are files in the real formats with the real faults (a label outside the answer choices, a row missing
a field, a JSON NaN)."""

import json
import logging

import pytest
from cb_templates import cb_templates_yaml

from optiml_jax.evaluation.suites.flan import flan_held_out_tasks
from optiml_jax.evaluation.suites.promptsource import promptsource_held_out_tasks
from optiml_jax.sources import template_failures
from optiml_jax.sources.promptsource_reader import read_promptsource_task
from optiml_jax.sources.promptsource_templates import load_templates_file
from optiml_jax.sources.raw_examples import SourceDataError
from optiml_jax.testing.source_files import write_jsonl

CB_TEMPLATES = cb_templates_yaml("can we infer", "free-form answer")
CB_ROWS = [{"premise": "It rained all day.", "hypothesis": "The ground is wet.", "label": 0, "idx": 0},
           {"premise": "Tom never eats fish.", "hypothesis": "Tom ate fish today.", "label": 1, "idx": 1}]
FLAN_PATTERNS = {"rte": [["{premise}\n\nCan we conclude that \"{hypothesis}\"?\n\n{options_}", "{answer}"],
                         ["{premise}\nCan we infer the following?\n{hypothesis}\n\n{options_}", "{answer}"]]}
RTE_ROWS = [{"premise": "The cat sat on the mat.", "hypothesis": "A cat is on a mat.", "options": ["yes", "no"],
             "answer": "yes"},
            {"premise": "Paris is in France.", "hypothesis": "Paris is in Spain.", "options": ["yes", "no"],
             "answer": "no"}]


@pytest.fixture
def ps_dir(tmp_path):
    root = tmp_path / "ps"
    (root / "super_glue/cb").mkdir(parents=True)
    (root / "super_glue/cb/templates.yaml").write_text(CB_TEMPLATES)
    write_jsonl(root / "super_glue/cb/train.jsonl", CB_ROWS)
    return root


@pytest.fixture(autouse=True)
def _drain():
    template_failures.drain()
    yield
    template_failures.drain()


def test_promptsource_drop_mode_reports_count_names_and_reasons(ps_dir, caplog):
    # Row 41's label 7 indexes past both templates' answers: each renders no target on it.
    rows = CB_ROWS + [{"premise": "x", "hypothesis": "y", "label": 7, "idx": 41}]
    write_jsonl(ps_dir / "super_glue/cb/validation.jsonl", rows)
    with pytest.raises(SourceDataError, match="'can we infer'.*example 41"):  # the default: an error, as before
        promptsource_held_out_tasks(ps_dir, ps_dir)
    with caplog.at_level(logging.WARNING):
        with pytest.raises(SourceDataError, match="every template failed to render"):
            promptsource_held_out_tasks(ps_dir, ps_dir, on_template_error="drop")
    assert "2 template(s) dropped because they fail to render" in caplog.text
    assert "'can we infer'" in caplog.text and "'free-form answer'" in caplog.text
    records = template_failures.drain()
    assert [(r["task"], r["template"], r["failed_examples"], r["examples"]) for r in records] == [
        ("ps_super_glue_cb", "can we infer", 1, 5), ("ps_super_glue_cb", "free-form answer", 1, 5)]
    assert records[0]["first_example"] == "validation example 41" and "example 41" in records[0]["reason"]


def test_promptsource_drop_mode_keeps_the_templates_that_render(ps_dir, caplog):
    # A 2-answer variant of 'free-form answer': label 2 renders no target there, while 'can we infer' gives 'Maybe'.
    text = CB_TEMPLATES.replace('["yes", "no", "maybe"][label]', '["yes", "no"][label]')
    (ps_dir / "super_glue/cb/templates.yaml").write_text(text)
    write_jsonl(ps_dir / "super_glue/cb/validation.jsonl", CB_ROWS + [{"premise": "x", "hypothesis": "y", "label": 2,
                                                                  "idx": 42}])
    with caplog.at_level(logging.WARNING):
        tasks = promptsource_held_out_tasks(ps_dir, ps_dir, on_template_error="drop")
    assert [t.template for t in tasks if t.name == "ps_super_glue_cb"] == ["can we infer"]
    assert "1 template(s) dropped" in caplog.text and "'free-form answer'" in caplog.text
    [record] = template_failures.drain()
    assert record["template"] == "free-form answer" and record["first_example"] == "validation example 42"


def test_nan_input_is_an_error_naming_task_example_and_field(ps_dir, tmp_path):
    (ps_dir / "super_glue/cb/validation.jsonl").write_text(
        json.dumps(CB_ROWS[0]) + "\n" + '{"premise": NaN, "hypothesis": "y", "label": 0, "idx": 9}\n')
    with pytest.raises(SourceDataError) as e:
        promptsource_held_out_tasks(ps_dir, ps_dir, on_template_error="drop")
    # Both templates read `premise`: in drop mode that is two reported failures, so every template failed.
    assert "ps_super_glue_cb" in str(e.value) and "example 9" in str(e.value) and "['premise'] are NaN" in str(e.value)
    with pytest.raises(SourceDataError, match=r"task ps_super_glue_cb, validation example 9: field\(s\) \['premise'\] "
                                             r"are NaN"):
        promptsource_held_out_tasks(ps_dir, ps_dir)
    flan = tmp_path / "flan"
    (flan / "patterns.json").parent.mkdir(parents=True, exist_ok=True)
    (flan / "patterns.json").write_text(json.dumps(FLAN_PATTERNS))
    (flan / "rte").mkdir()
    (flan / "rte/validation.jsonl").write_text(json.dumps(RTE_ROWS[0]) + "\n" + json.dumps(
        {**RTE_ROWS[1], "id": "row-3"}).replace('"Paris is in Spain."', "NaN") + "\n")
    with pytest.raises(SourceDataError, match=r"task flan_rte, validation example row-3: field\(s\) \['hypothesis'\] "
                                             r"are NaN"):
        flan_held_out_tasks(flan / "patterns.json", flan)


def test_flan_drop_mode_reports_the_template_that_needs_a_missing_field(tmp_path, caplog):
    flan = tmp_path / "flan"
    flan.mkdir()
    patterns = {"rte": FLAN_PATTERNS["rte"] + [["{premise} Topic: {topic}\n\n{options_}", "{answer}"]]}
    (flan / "patterns.json").write_text(json.dumps(patterns))
    write_jsonl(flan / "rte/validation.jsonl", RTE_ROWS)
    with caplog.at_level(logging.WARNING):
        tasks = flan_held_out_tasks(flan / "patterns.json", flan, on_template_error="drop")
    assert sorted(t.template for t in tasks if t.name == "flan_rte") == ["t0", "t1"]
    [record] = template_failures.drain()
    assert (record["task"], record["template"], record["failed_examples"]) == ("flan_rte", "t2", 2)
    assert "row lacks template fields ['topic']" in record["reason"]
    assert "flan_held_out: 1 template(s) dropped" in caplog.text and "t2" in caplog.text


def test_opt_iml_bench_reader_reports_the_templates_it_drops(ps_dir, caplog):
    templates = load_templates_file(ps_dir / "super_glue/cb/templates.yaml")
    rows = CB_ROWS + [{"premise": "x", "hypothesis": "y", "label": 7, "idx": 41}]
    with caplog.at_level(logging.WARNING):
        examples = list(read_promptsource_task(templates, rows, task="ps_super_glue_cb", all_templates=True,
                                               skip_failing_templates=True))
    assert len(examples) == 4  # both templates on the two good rows
    assert "PromptSource task ps_super_glue_cb: 2 template(s) dropped" in caplog.text
    assert [r["template"] for r in template_failures.drain()] == ["can we infer", "free-form answer"]


def test_evaluate_records_the_dropped_templates_in_results_json_and_report(ps_dir, hf_export, tmp_path):
    """End to end through `evaluate` (what the eval CLI runs): the drop is in results.json and report.md, and a
    stale record from an earlier build in this process is not."""
    import gin

    from optiml_jax.evaluation.entry_points import evaluate

    text = CB_TEMPLATES.replace('["yes", "no", "maybe"][label]', '["yes", "no"][label]')
    (ps_dir / "super_glue/cb/templates.yaml").write_text(text)
    write_jsonl(ps_dir / "super_glue/cb/validation.jsonl", CB_ROWS + [{"premise": "x", "hypothesis": "y", "label": 2,
                                                                  "idx": 42}])
    template_failures.record([template_failures.TemplateFailure("stale", "t", "old", "0", 1, 1, "e", "r")])
    out = tmp_path / "eval"
    gin.clear_config()  # an earlier test in this process may have left a finalized (locked) config
    try:
        gin.bind_parameter("promptsource_held_out_tasks.on_template_error", "drop")
        gin.bind_parameter("promptsource_held_out_tasks.templates_dir", str(ps_dir))
        gin.bind_parameter("promptsource_held_out_tasks.dataset_dir", str(ps_dir))
        results = evaluate(str(hf_export), str(out), suites=["promptsource_held_out"], shots=(0,))
    finally:
        gin.clear_config()
    on_disk = json.loads((out / "results.json").read_text())
    assert [(r["task"], r["template"], r["first_example"]) for r in on_disk["template_failures"]] == [
        ("ps_super_glue_cb", "free-form answer", "validation example 42")]
    assert results["template_failures"] == on_disk["template_failures"]
    assert {s["template"] for s in on_disk["scores"] if s["task"].startswith("ps_super_glue_cb")} == {"can we infer"}
    report = (out / "report.md").read_text()
    assert "## Templates dropped" in report and "| promptsource_held_out | ps_super_glue_cb | free-form answer | 1 / 5 |" in report
