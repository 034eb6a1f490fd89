"""PromptSource templates: safe YAML loading, rendering conventions, synthetic rendering of the real files."""

import pytest

from optiml_jax.sources.promptsource_reader import read_promptsource_dir, task_name
from optiml_jax.sources.promptsource_synthetic import render_report
from optiml_jax.sources.promptsource_templates import load_all_templates, load_templates_file
from optiml_jax.sources.raw_examples import SourceDataError

YAML = """dataset: toy
templates:
  t1: !Template
    answer_choices: no ||| yes
    id: t1
    jinja: 'Premise: {{premise}} Does it follow? ||| {{ answer_choices[label] }}'
    metadata: !TemplateMetadata
      choices_in_prompt: false
      metrics: [Accuracy]
      original_task: true
    name: follow
    reference: ''
  t2: !Template
    answer_choices: null
    id: t2
    jinja: 'Write a premise. ||| {{premise}}'
    metadata: !TemplateMetadata
      original_task: false
    name: inverted
    reference: ''
"""


def test_fixture_templates_apply_to_jsonl(tmp_path):
    (tmp_path / "toy").mkdir()
    tf = tmp_path / "toy" / "templates.yaml"
    tf.write_text(YAML)
    templates = load_templates_file(tf)
    assert [t.original_task for t in templates] == [True, False]
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_text('{"premise": "A ||| B", "label": 1}\n{"premise": "C", "label": 0}\n')
    exs = list(read_promptsource_dir(tf, data, task="ps_toy"))
    assert [e["target"] for e in exs] == ["yes", "no"]
    assert exs[0]["input"] == "Premise: A ||| B Does it follow?" and exs[0]["options"] == ["no", "yes"]
    (data / "validation.jsonl").write_text('{"label": 7}\n')
    with pytest.raises(SourceDataError, match="ps_toy.*failed to render|rendered no target"):
        list(read_promptsource_dir(tf, data, split="validation", task="ps_toy"))


def test_broken_yaml_names_file(tmp_path):
    p = tmp_path / "templates.yaml"
    p.write_text("templates:\n  a: !Template\n    jinja: [unclosed\n")
    with pytest.raises(SourceDataError, match="(?s)broken YAML.*templates.yaml"):
        load_templates_file(p)
    p.write_text("templates:\n  a: !python/object:os.system {}\n")  # unsafe tags are refused
    with pytest.raises(SourceDataError):
        load_templates_file(p)


def test_task_names():
    assert task_name("super_glue/copa") == "ps_super_glue_copa" and task_name("Zaid/coqa_expanded") == "ps_zaid_coqa_expanded"


def test_all_real_templates_parse_and_original_ones_render(shared_data):
    templates = load_all_templates(shared_data / "promptsource")
    assert len(templates) == 279 and sum(len(v) for v in templates.values()) == 2085
    report = render_report(templates)
    n_original = sum(t.original_task is True for v in templates.values() for t in v)
    assert report["rendered"] + report["failed"] == n_original
    # Known residue: templates whose fields must satisfy cross-field invariants (see the report's reasons).
    assert report["failed"] <= 0.06 * n_original, report["failures"][:5]
    assert all(f["reason"] and f["file"].endswith("templates.yaml") for f in report["failures"])
