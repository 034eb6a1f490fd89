"""Copies of real PromptSource templates of super_glue/cb ("can we infer", "GPT-3 style"), a generation template
without answer_choices and a non-original-task template that must be left out; `cb_templates_yaml` writes the
chosen ones as one templates.yaml, in PromptSource's (id) order. Shared by the suite and template-failure tests."""


def _made_up_template(uid: str, name: str, jinja: str, *, original_task: bool) -> str:
    """A template of ours in PromptSource's layout: no answer_choices, metric Other."""
    return (f"  {uid}: !Template\n    id: {uid}\n    jinja: '{jinja}'\n    metadata: !TemplateMetadata\n"
            f"      choices_in_prompt: false\n      metrics:\n      - Other\n"
            f"      original_task: {str(original_task).lower()}\n    name: {name}\n    reference: ''\n")


CB_HEADER = r"""dataset: super_glue
subset: cb
templates:
"""
CB_TEMPLATE_BLOCKS = {
    "can we infer": r"""  2e76cd0f-68ca-4f03-83ed-11cf15b25a84: !Template
    answer_choices: Yes ||| No ||| Maybe
    id: 2e76cd0f-68ca-4f03-83ed-11cf15b25a84
    jinja: 'Suppose {{premise}} Can we infer that "{{hypothesis}}"? Yes, no, or maybe?
      ||| {% if label !=-1 %}{{ answer_choices[label] }}{% endif %} '
    metadata: !TemplateMetadata
      choices_in_prompt: true
      metrics:
      - Accuracy
      original_task: true
    name: can we infer
    reference: Webson & Pavlick 2021
""",
    "GPT-3 style": r"""  75db2bc2-3caa-4956-9653-13c7dd6255df: !Template
    answer_choices: True ||| False ||| Neither
    id: 75db2bc2-3caa-4956-9653-13c7dd6255df
    jinja: '{{premise}}

      Question: {{hypothesis}} True, False, or Neither? ||| {% if label !=-1 %}{{ answer_choices[label]
      }}{% endif %}'
    metadata: !TemplateMetadata
      choices_in_prompt: true
      metrics:
      - Accuracy
      original_task: true
    name: GPT-3 style
    reference: 'Same as reported in Figure G7 of the GPT-3 paper'
""",
    "free-form answer": _made_up_template("aaaa0000-0000-0000-0000-000000000001", "free-form answer",
                                          '{{premise}} Does this imply "{{hypothesis}}"? ||| '
                                          '{{ ["yes", "no", "maybe"][label] }}', original_task=True),
    "generate hypothesis": _made_up_template("bbbb0000-0000-0000-0000-000000000002", "generate hypothesis",
                                             "Write a hypothesis for: {{premise}} ||| {{hypothesis}}",
                                             original_task=False),
}


def cb_templates_yaml(*names: str) -> str:
    """templates.yaml text with the templates `names` (default: all four), in file order."""
    unknown = set(names) - set(CB_TEMPLATE_BLOCKS)
    if unknown:
        raise KeyError(f"no CB template {sorted(unknown)}; have {list(CB_TEMPLATE_BLOCKS)}")
    return CB_HEADER + "".join(text for name, text in CB_TEMPLATE_BLOCKS.items() if not names or name in names)
