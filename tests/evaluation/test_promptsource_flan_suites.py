"""The PromptSource / FLAN held-out suites: one EvalTask per (held-out task, original template) built from local
files in the real formats, scored by rank classification over answer choices (or generation), averaged over
templates into the task score, placed at the split's level and category; missing data skipped, broken
templates reported by name."""

import json
import logging
import pathlib
import re

import pytest
from cb_templates import cb_templates_yaml

from optiml_jax.sources.raw_examples import SourceDataError
from optiml_jax.testing.source_files import write_jsonl
from optiml_jax.evaluation import run_evaluation
from optiml_jax.evaluation.suites.flan import flan_held_out_tasks
from optiml_jax.evaluation.suites.promptsource import promptsource_held_out_tasks
from optiml_jax.evaluation.suites import build_suites

# Real PromptSource templates (cb_templates.py beside this file; super_glue/boolq "GPT-3 Style" below).
CB_TEMPLATES = cb_templates_yaml()

BOOLQ_TEMPLATES = r"""dataset: super_glue
subset: boolq
templates:
  3e386463-1715-4578-9cba-07d11a0d3b61: !Template
    answer_choices: No ||| Yes
    id: 3e386463-1715-4578-9cba-07d11a0d3b61
    jinja: "{{ passage }} \nQuestion: {{ question }}\nAnswer: ||| \n{% if label !=\
      \ -1 %}\n{{ answer_choices[label] }}\n{% endif %}"
    metadata: !TemplateMetadata
      choices_in_prompt: false
      metrics:
      - Accuracy
      original_task: true
    name: GPT-3 Style
    reference: Same as Figure G29, p. 58 of the GPT-3 paper
"""

CB_VALIDATION = [
    {"premise": "It was raining all day.", "hypothesis": "The streets are wet.", "label": 0, "idx": 0},
    {"premise": "The shop closed at noon.", "hypothesis": "The shop is open at night.", "label": 1, "idx": 1},
    {"premise": "She might visit Paris.", "hypothesis": "She visited Paris.", "label": 2, "idx": 2},
]
CB_TRAIN = [
    {"premise": "The dog barked loudly.", "hypothesis": "The dog made a sound.", "label": 0, "idx": 0},
    {"premise": "Tom never eats fish.", "hypothesis": "Tom ate fish today.", "label": 1, "idx": 1},
]
BOOLQ_TEST = [{"passage": "Water boils at 100 degrees.", "question": "does water boil at 100 degrees", "label": 1,
               "idx": 7}]
BOOLQ_VALIDATION = [{"passage": "Cats are mammals.", "question": "are cats reptiles", "label": 0, "idx": 3}]

# Copies of real FLAN 2021 patterns (rte: three original templates + the inverted one that must be dropped) and a
# generation pattern for a held-out summarization task.
FLAN_PATTERNS = {
    "rte": [
        ["{premise}\n\nBased on the paragraph above can we conclude that \"{hypothesis}\"?\n\n{options_}", "{answer}"],
        ["{premise}\n\nCan we draw the following conclusion?\n{hypothesis}\n\n{options_}", "{answer}"],
        ["{premise}\nCan we infer the following?\n{hypothesis}\n\n{options_}", "{answer}"],
        ["Generate a context and a hypothesis.", "Context: {premise}\n\nHypothesis: {hypothesis}"],
    ],
    "newsroom": [["{text}\n\nWrite a one or two sentence summary of the above article.", "{summary}"]],
}
RTE_OPTIONS = ["yes", "no"]
RTE_VALIDATION = [
    {"premise": "The cat sat on the mat.", "hypothesis": "A cat is on a mat.", "options": RTE_OPTIONS, "answer": "yes"},
    {"premise": "Paris is in France.", "hypothesis": "Paris is in Spain.", "options": RTE_OPTIONS, "answer": "no"},
]
NEWSROOM_VALIDATION = [{"text": "The council approved the new park on Monday.", "summary": "New park approved."}]


def _write_promptsource(root: pathlib.Path, rows_root: pathlib.Path | None = None) -> None:
    """templates under root/<key>/templates.yaml; rows under rows_root (default: next to the templates)."""
    rows_root = rows_root or root
    for key, text in (("super_glue/cb", CB_TEMPLATES), ("super_glue/boolq", BOOLQ_TEMPLATES)):
        (root / key).mkdir(parents=True, exist_ok=True)
        (root / key / "templates.yaml").write_text(text)
    write_jsonl(rows_root / "super_glue/cb/validation.jsonl", CB_VALIDATION)
    write_jsonl(rows_root / "super_glue/cb/train.jsonl", CB_TRAIN)
    write_jsonl(rows_root / "super_glue/boolq/test.jsonl", BOOLQ_TEST)
    write_jsonl(rows_root / "super_glue/boolq/validation.jsonl", BOOLQ_VALIDATION)
    # Templates without data (a held-out dataset the user did not supply): skipped, not an error.
    (root / "super_glue/rte").mkdir(parents=True, exist_ok=True)
    (root / "super_glue/rte/templates.yaml").write_text(CB_TEMPLATES.replace("subset: cb", "subset: rte"))


@pytest.fixture
def data_root(tmp_path):
    _write_promptsource(tmp_path / "data" / "promptsource")
    flan = tmp_path / "data" / "flan"
    flan.mkdir(parents=True)
    (flan / "flan2021_patterns.json").write_text(json.dumps(FLAN_PATTERNS))
    write_jsonl(flan / "rte/validation.jsonl", RTE_VALIDATION)
    write_jsonl(flan / "rte/train.jsonl", RTE_VALIDATION[::-1])
    write_jsonl(flan / "newsroom/validation.jsonl", NEWSROOM_VALIDATION)
    return tmp_path / "data"


def _by_key(tasks):
    return {t.key: t for t in tasks}


def test_promptsource_tasks_per_original_template(data_root, caplog):
    with caplog.at_level(logging.INFO):
        tasks = build_suites(["promptsource_held_out"], data_root)
    by_key = _by_key(tasks)
    assert set(by_key) == {"ps_super_glue_cb/can we infer", "ps_super_glue_cb/GPT-3 style",
                           "ps_super_glue_cb/free-form answer", "ps_super_glue_boolq/GPT-3 Style"}
    gpt3 = by_key["ps_super_glue_cb/GPT-3 style"]
    assert [ex["options"] for ex in gpt3.examples] == [["True", "False", "Neither"]] * 3
    assert [ex["target"] for ex in gpt3.examples] == ["True", "False", "Neither"]
    assert gpt3.examples[0]["input"] == (
        "It was raining all day.\nQuestion: The streets are wet. True, False, or Neither?")
    assert gpt3.is_rank_classification() and gpt3.info.metric == "accuracy"
    free = by_key["ps_super_glue_cb/free-form answer"]
    assert not free.is_rank_classification() and free.info.metric == "rouge_l"
    assert [ex["target"] for ex in free.examples] == ["yes", "no", "maybe"]
    # level and category from the paper split: CB is NLI (held-out category), BoolQ a held-out QA task.
    assert {(t.level, t.info.category, t.collection_name, t.group) for t in tasks if t.name == "ps_super_glue_cb"} == {
        ("fully_held_out", "textual_entailment", "promptsource", "ps_super_glue_cb")}
    boolq = by_key["ps_super_glue_boolq/GPT-3 Style"]
    assert (boolq.level, boolq.info.category) == ("partially_supervised", "question_answering")
    # the test split wins over validation; demonstrations come from train (none for boolq)
    assert [ex["id"] for ex in boolq.examples] == ["ps_super_glue_boolq-test-7"]
    assert boolq.examples[0]["options"] == ["No", "Yes"] and boolq.examples[0]["target"] == "Yes"
    assert not boolq.demonstrations
    assert [d["target"] for d in gpt3.demonstrations] == ["True", "False"]
    skipped = [r.getMessage() for r in caplog.records if "skipping" in r.getMessage()]
    assert any("ps_super_glue_rte " in m and "no local data" in m for m in skipped)
    assert any("ps_anli " in m for m in skipped)


def test_demonstrations_precede_the_example(data_root, tiny_model):
    from optiml_jax.evaluation.evaluator import build_source

    task = _by_key(build_suites(["promptsource_held_out"], data_root))["ps_super_glue_cb/can we infer"]
    example = task.examples[0]
    source = build_source(tiny_model, task, example, 1, reserve=4)
    demo = next(d for d in task.demonstrations if d["input"] in source)
    assert source.index(demo["input"]) < source.index(example["input"])
    assert build_source(tiny_model, task, example, 0, reserve=4).count("Suppose") == 1


def test_broken_template_is_an_error_naming_template_task_and_example(tmp_path):
    _write_promptsource(tmp_path / "ps")
    write_jsonl(tmp_path / "ps/super_glue/cb/validation.jsonl",
           CB_VALIDATION + [{"premise": "x", "hypothesis": "y", "label": 7, "idx": 41}])
    with pytest.raises(SourceDataError) as err:
        promptsource_held_out_tasks(tmp_path / "ps", tmp_path / "ps")
    msg = str(err.value)
    assert "'can we infer'" in msg and "ps_super_glue_cb" in msg and "example 41" in msg


def test_hidden_test_labels_point_to_the_validation_split(tmp_path):
    _write_promptsource(tmp_path / "ps")
    write_jsonl(tmp_path / "ps/super_glue/cb/test.jsonl", [{"premise": "x", "hypothesis": "y", "label": -1, "idx": 5}])
    with pytest.raises(SourceDataError, match=r"'can we infer'.*ps_super_glue_cb, test example 5.*eval_splits"):
        promptsource_held_out_tasks(tmp_path / "ps", tmp_path / "ps")
    tasks = promptsource_held_out_tasks(tmp_path / "ps", tmp_path / "ps", eval_splits=("validation",))
    assert {len(t.examples) for t in tasks if t.name == "ps_super_glue_cb"} == {len(CB_VALIDATION)}


def test_missing_data_everywhere_is_a_clear_error(tmp_path):
    (tmp_path / "ps").mkdir()
    with pytest.raises(SourceDataError, match="none of the .* held-out PromptSource tasks has local data"):
        promptsource_held_out_tasks(tmp_path / "ps", tmp_path / "ps")
    with pytest.raises(ValueError, match="PROMPTSOURCE_TEMPLATES_DIR"):
        promptsource_held_out_tasks()


def test_flan_tasks_per_original_template(data_root, caplog):
    with caplog.at_level(logging.INFO):
        tasks = build_suites(["flan_held_out"], data_root)
    by_key = _by_key(tasks)
    assert set(by_key) == {"flan_rte/t0", "flan_rte/t1", "flan_rte/t2", "flan_newsroom/t0"}
    rte = [t for t in tasks if t.name == "flan_rte"]
    assert [t.template for t in rte] == ["t0", "t1", "t2"]  # the inverted 4th template is dropped
    t1 = by_key["flan_rte/t1"]
    assert t1.examples[0]["input"] == ("The cat sat on the mat.\n\nCan we draw the following conclusion?\n"
                                       "A cat is on a mat.\n\nOPTIONS:\n- yes\n- no")
    assert all(t.is_rank_classification() and t.examples[1]["options"] == RTE_OPTIONS for t in rte)
    assert {(t.level, t.info.category, t.collection_name) for t in rte} == {
        ("fully_held_out", "textual_entailment", "flan")}
    assert len(t1.demonstrations) == 2
    news = [t for t in tasks if t.name == "flan_newsroom"]
    assert len(news) == 1 and not news[0].is_rank_classification() and news[0].info.metric == "rouge_l"
    assert (news[0].level, news[0].info.category) == ("partially_supervised", "summarization")
    assert news[0].examples[0]["target"] == "New park approved."
    assert any("flan_cb " in r.getMessage() for r in caplog.records if "skipping" in r.getMessage())


def test_flan_row_missing_a_field_names_template_task_and_example(data_root):
    write_jsonl(data_root / "flan/rte/validation.jsonl", RTE_VALIDATION + [{"premise": "p", "options": RTE_OPTIONS,
                                                                       "answer": "yes", "id": "row-9"}])
    with pytest.raises(SourceDataError) as err:
        flan_held_out_tasks(data_root / "flan/flan2021_patterns.json", data_root / "flan")
    msg = str(err.value)
    assert "template t0" in msg and "flan_rte" in msg and "row-9" in msg and "hypothesis" in msg


def test_run_evaluation_averages_templates_into_the_task_score(data_root, tiny_model, tmp_path):
    tasks = build_suites(["promptsource_held_out", "flan_held_out"], data_root)
    results = run_evaluation(tiny_model, tasks, shots=(0, 1), output_dir=tmp_path / "out", max_new_tokens=3)
    for shots in (0, 1):
        records = [r for r in results["scores"] if r["shots"] == shots]
        for name, n_templates in (("ps_super_glue_cb", 3), ("flan_rte", 3), ("ps_super_glue_boolq", 1)):
            per_template = [r["score"] for r in records if r["base_task"] == name]
            assert len(per_template) == n_templates
            row = next(t for t in results["aggregates"]["tasks"] if t["task"] == name and t["shots"] == shots)
            assert row["score"] == pytest.approx(sum(per_template) / n_templates)
            assert row["num_subtasks"] == 1
    levels = {(r["level"], r["shots"]) for r in results["aggregates"]["levels"]}
    assert levels == {(lvl, k) for lvl in ("fully_held_out", "partially_supervised") for k in (0, 1)}
    colls = {r["collection"] for r in results["aggregates"]["collections"]}
    assert colls == {"promptsource", "flan"}
    preds = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    gpt3 = [p for p in preds if p["task"] == "ps_super_glue_cb/GPT-3 style"]
    assert gpt3 and all(p["options"] == ["True", "False", "Neither"] for p in gpt3)
    assert all(p["prediction"] in p["options"] for p in gpt3)


def test_real_promptsource_templates_flow_through(shared_data, tmp_path, tiny_model):
    templates = shared_data / "promptsource"
    cb_yaml = templates / "super_glue/cb/templates.yaml"
    if not cb_yaml.is_file():
        pytest.skip(f"{cb_yaml} is absent")
    write_jsonl(tmp_path / "rows/super_glue/cb/validation.jsonl", CB_VALIDATION)
    tasks = promptsource_held_out_tasks(templates, tmp_path / "rows")
    assert {t.name for t in tasks} == {"ps_super_glue_cb"}
    assert len(tasks) == len(re.findall(r"original_task: true", cb_yaml.read_text()))
    gpt3 = _by_key(tasks)["ps_super_glue_cb/GPT-3 style"]
    assert gpt3.examples[2]["options"] == ["True", "False", "Neither"] and gpt3.examples[2]["target"] == "Neither"
    for t in tasks:  # every real CB template is answer-choice scored and its targets are the label's choice
        assert t.is_rank_classification()
        assert [ex["options"].index(ex["target"]) for ex in t.examples] == [0, 1, 2]
    results = run_evaluation(tiny_model, tasks[:2], shots=(0,))
    assert len(results["scores"]) == 2 and results["aggregates"]["tasks"][0]["level"] == "fully_held_out"


def test_eval_cli_promptsource_held_out(hf_export, tmp_path):
    import gin

    from optiml_jax.cli import eval as eval_cli

    _write_promptsource(tmp_path / "templates", rows_root=tmp_path / "rows")
    try:
        rc = eval_cli.main(["--gin_file=runs/eval.gin", f"--gin.CHECKPOINT_PATH={hf_export}",
                            f"--gin.EVAL_OUTPUT_DIR={tmp_path / 'out'}", "--gin.SUITES=('promptsource_held_out',)",
                            f"--gin.PROMPTSOURCE_TEMPLATES_DIR={tmp_path / 'templates'}",
                            f"--gin.PROMPTSOURCE_DATA_DIR={tmp_path / 'rows'}", "--gin.SHOTS=(0,)",
                            "--gin.MAX_NEW_TOKENS=3"])
    finally:
        with gin.unlock_config():
            gin.clear_config()
    assert rc == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert {r["task"] for r in results["scores"]} == {
        "ps_super_glue_cb/can we infer", "ps_super_glue_cb/GPT-3 style", "ps_super_glue_cb/free-form answer",
        "ps_super_glue_boolq/GPT-3 Style"}
    assert {(r["task"], r["level"]) for r in results["aggregates"]["tasks"]} == {
        ("ps_super_glue_cb", "fully_held_out"), ("ps_super_glue_boolq", "partially_supervised")}
