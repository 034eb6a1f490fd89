"""Writers of small source files, each in its collection's public format (NIv2 task JSON, CoT TSV, JSONL, PromptSource
templates.yaml + data, FLAN patterns), for tests of the readers (`optiml_jax.sources`), OPT-IML Bench's
registration and held-out exclusion.

Every example carries a marker word (`mk<tag><i>`) naming its task and split, so a test can decode packed batches
and tell exactly which task's (and which split's) data reached them. Task names are real catalog names, so the
catalog's categories and the `opt_iml_paper` split decide their level.
"""

from __future__ import annotations

import json
import pathlib

from optiml_jax.tasks.mini_bench.tokenizer import TOKENIZER_DIR as MINI_TOKENIZER


import optiml_jax

OPT_IML_BENCH_GIN = optiml_jax.gin_dir() / "bench" / "opt_iml_bench.gin"

# NIv2 task file stems (catalog names are niv2_<stem>) and their level under opt_iml_paper (from the paper):
NIV2_TRAIN = ("task001_quoref_question_generation", "task002_quoref_answer_generation")
NIV2_HELD_OUT_CATEGORY = ("task1152_bard_analogical_reasoning_causation",  # Word Analogy
                          "task190_snli_classification",                    # Textual Entailment
                          "task1557_jfleg_answer_generation")              # Grammar Error Correction
NIV2_HELD_OUT_TASK = ("task309_race_answer_generation",)  # RACE: partially supervised (validation), paper Table 15
NIV2_SHARED_SOURCE = ("task311_race_question_generation",)  # trainable category, but RACE is a held-out source


def marker(tag: str, i: int) -> str:
    return f"mk{tag}x{i}"


def write_niv2_task(data_dir: pathlib.Path, stem: str, n: int = 30, tag: str | None = None) -> pathlib.Path:
    tag = tag or stem.split("_")[0]
    data_dir.mkdir(parents=True, exist_ok=True)
    body = {"Definition": [f"Answer the request about {tag}."], "Categories": ["Misc."],
            "Positive Examples": [{"input": "demo in", "output": "demo out", "explanation": "demo"}],
            "Instances": [{"id": f"{stem}-{i}", "input": f"Question {marker(tag, i)} number {i}?",
                           "output": [f"answer {marker(tag, i)}"]} for i in range(n)]}
    path = data_dir / f"{stem}.json"
    path.write_text(json.dumps(body))
    return path


def write_cot_tsv(data_dir: pathlib.Path, name: str, n: int = 30) -> pathlib.Path:
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / f"{name}_train.tsv"
    path.write_text("".join(f"Is {marker(name, i)} true?\tyes\tBecause {marker(name, i)} holds.\n" for i in range(n)))
    return path


def write_jsonl(path: pathlib.Path, rows: list[dict]) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


PS_TEMPLATES = """dataset: {dataset}
templates:
  a1: !Template
    answer_choices: World ||| Sports
    id: a1
    jinja: 'What is this text about? {{{{text}}}} ||| {{{{ answer_choices[label] }}}}'
    metadata: !TemplateMetadata
      choices_in_prompt: false
      metrics: [Accuracy]
      original_task: true
    name: about
    reference: ''
  a2: !Template
    answer_choices: World ||| Sports
    id: a2
    jinja: '{{{{text}}}} Topic? ||| {{{{ answer_choices[label] }}}}'
    metadata: !TemplateMetadata
      choices_in_prompt: false
      metrics: [Accuracy]
      original_task: true
    name: topic
    reference: ''
  a3: !Template
    answer_choices: null
    id: a3
    jinja: 'Write a news text. ||| {{{{text}}}}'
    metadata: !TemplateMetadata
      original_task: false
    name: inverted
    reference: ''
"""


def write_promptsource(templates_root: pathlib.Path, data_root: pathlib.Path, dataset: str, tag: str,
                       splits=("train", "validation"), n: int = 12) -> None:
    (templates_root / dataset).mkdir(parents=True, exist_ok=True)
    (templates_root / dataset / "templates.yaml").write_text(PS_TEMPLATES.format(dataset=dataset))
    for split in splits:
        write_jsonl(data_root / dataset / f"{split}.jsonl",
                    [{"text": f"{split} news {marker(tag + split, i)}", "label": i % 2} for i in range(n)])


FLAN_PATTERNS = {
    "ag_news_subset": [["{title}\n\n{text}\n\nWhat is this text about?\n{options_}", "{answer}"],
                       ["Topic of: {text}\n{options_}", "{answer}"],
                       ["Write a title for: {answer}", "{title}"]],  # inverted: dropped
    "rte": [["{premise}\nDoes it follow that {hypothesis}?\n{options_}", "{answer}"]],
}


def write_flan(templates_file: pathlib.Path, data_root: pathlib.Path, n: int = 12) -> None:
    templates_file.parent.mkdir(parents=True, exist_ok=True)
    templates_file.write_text(json.dumps(FLAN_PATTERNS))
    for split in ("train", "validation"):
        write_jsonl(data_root / "ag_news_subset" / f"{split}.jsonl",
                    [{"title": f"T{i}", "text": f"{split} flan {marker('flanag' + split, i)}",
                      "options": ["World", "Sports"], "answer": ["World", "Sports"][i % 2]} for i in range(n)])
        write_jsonl(data_root / "rte" / f"{split}.jsonl",
                    [{"premise": f"{split} premise {marker('flanrte' + split, i)}", "hypothesis": "h",
                      "options": ["yes", "no"], "answer": "yes"} for i in range(n)])


def gin_bindings(**macros) -> list[str]:
    """`--gin.MACRO=VALUE` arguments (strings as given, other values as Python literals)."""
    return [f"--gin.{k}={v if isinstance(v, str) else repr(v)}" for k, v in macros.items()]
