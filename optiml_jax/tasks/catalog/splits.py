"""Generalization splits over the catalog, as data, selectable by name (gin: `get_split.name`).

`opt_iml_paper` (default) reproduces the paper (section 2.3/4.1, Table 15):
- fully held-out categories: the 7 of `PAPER_HELD_OUT_CATEGORIES` (NLI -> Textual Entailment, coreference, dialogue
  act recognition, cause/effect, word analogy, stereotype detection, grammar error correction);
- partially supervised (held-out tasks of seen categories): MMLU, Civil Comments/Jigsaw, Newsroom, RACE,
  StrategyQA/GSM8K (validation); BoolQ, OpenBookQA, ARC, PIQA, MultiRC, StoryCloze, HellaSwag, WiC, DART,
  MultiWoZ and NIv2's official test tasks of seen categories (test);
- fully supervised: SQuAD v1, Blended Skill Talk, CNN/DM (validation); Spider (test).
Leakage by data source (paper 2.3: train and eval tasks never share a source) is applied by `trainable_tasks`.
"""

from __future__ import annotations

from typing import Callable, Iterable

import gin

from optiml_jax.tasks.catalog.entries import load_catalog
from optiml_jax.tasks.metadata import GeneralizationSplit, TaskInfo

PAPER_HELD_OUT_CATEGORIES = frozenset({
    "Textual Entailment", "Coreference Resolution", "Dialogue Act Recognition", "Cause Effect Classification",
    "Word Analogy", "Stereotype Detection", "Grammar Error Correction"})

MMLU_SUBJECTS = (
    "abstract_algebra anatomy astronomy business_ethics clinical_knowledge college_biology college_chemistry "
    "college_computer_science college_mathematics college_medicine college_physics computer_security "
    "conceptual_physics econometrics electrical_engineering elementary_mathematics formal_logic global_facts "
    "high_school_biology high_school_chemistry high_school_computer_science high_school_european_history "
    "high_school_geography high_school_government_and_politics high_school_macroeconomics high_school_mathematics "
    "high_school_microeconomics high_school_physics high_school_psychology high_school_statistics "
    "high_school_us_history high_school_world_history human_aging human_sexuality international_law jurisprudence "
    "logical_fallacies machine_learning management marketing medical_genetics miscellaneous moral_disputes "
    "moral_scenarios nutrition philosophy prehistory professional_accounting professional_law professional_medicine "
    "professional_psychology public_relations security_studies sociology us_foreign_policy virology "
    "world_religions").split()
MMLU_TASKS = frozenset(f"mmlu_{s}" for s in MMLU_SUBJECTS)  # eval-only tasks (no catalog collection)

# Paper Table 15 (validation), by catalog name.
_VAL_HELD_OUT_CATEGORY_TASKS = {
    "ps_wino_bias_type1_anti", "ps_wino_bias_type1_pro", "ps_wino_bias_type2_anti", "ps_wino_bias_type2_pro",
    "niv2_task1664_winobias_text_generation",
    *(f"niv2_task{n}_bard_analogical_reasoning_{s}" for n, s in (
        (1152, "causation"), (1153, "affordance"), (1154, "travel"), (1155, "trash_or_treasure"), (1156, "tools"),
        (1157, "rooms_for_containers"), (1158, "manipulating_items"), (1159, "containers"))),
    "niv2_task391_causal_relationship", "niv2_task392_inverse_causal_relationship",
    "niv2_task393_plausible_result_generation", "ps_super_glue_copa", "niv2_task827_copa_commonsense_reasoning",
    "niv2_task828_copa_commonsense_cause_effect", "flan_copa", "niv2_task1393_superglue_copa_text_completion",
    "niv2_task614_glucose_cause_event_detection", "niv2_task1557_jfleg_answer_generation"}
_VAL_PARTIAL = {
    *(f"niv2_task{n}_civil_comments_{s}_classification" for n, s in (
        (1720, "toxicity"), (1721, "obscenity"), (1722, "threat"), (1723, "sexuallyexplicit"), (1724, "insult"),
        (1725, "severtoxicity"))),
    "ps_jigsaw_unintended_bias", "flan_newsroom", "ps_race_all", "ps_race_high", "ps_race_middle",
    "niv2_task309_race_answer_generation", "niv2_task310_race_classification", "cot_strategyqa", "cot_gsm8k",
    *MMLU_TASKS}
_TEST_PARTIAL = {
    "flan_bool_q", "ps_super_glue_boolq", "flan_openbookqa", "ps_openbookqa_main", "ps_openbookqa_additional",
    "flan_arc_challenge", "flan_arc_easy", "ps_ai2_arc_arc_challenge", "ps_ai2_arc_arc_easy", "flan_piqa", "ps_piqa",
    "flan_multirc", "ps_super_glue_multirc", "flan_story_cloze", "ps_story_cloze_2016", "flan_hellaswag",
    "ps_hellaswag", "flan_wic", "ps_super_glue_wic", "skg_dart", "skg_multiwoz"}
_VAL_SUPERVISED = {"flan_squad_v1", "ps_squad", "ps_blended_skill_talk", "ps_cnn_dailymail_3_0_0"}
_TEST_SUPERVISED = {"skg_spider"}


def _paper_niv2_test_names() -> set[str]:
    """The 119 official NIv2 test tasks, from the catalog's `niv2_test_tasks.txt` list (task names are facts)."""
    from optiml_jax.tasks.catalog.entries import CATALOG_DIR
    path = CATALOG_DIR / "niv2_test_tasks.txt"
    return {"niv2_" + line.strip() for line in path.read_text().splitlines() if line.strip()} if path.exists() else set()


def opt_iml_paper_split(tasks: Iterable[TaskInfo] | None = None) -> GeneralizationSplit:
    tasks = list(load_catalog() if tasks is None else tasks)
    names = {t.name for t in tasks} | MMLU_TASKS
    by_name = {t.name: t for t in tasks}
    niv2_test = {n for n in _paper_niv2_test_names() if n in by_name
                 and by_name[n].category not in PAPER_HELD_OUT_CATEGORIES}
    held_out = (_VAL_PARTIAL | _TEST_PARTIAL | niv2_test) & names
    supervised = (_VAL_SUPERVISED | _TEST_SUPERVISED) & names
    validation = (_VAL_HELD_OUT_CATEGORY_TASKS | _VAL_PARTIAL | _VAL_SUPERVISED) & names
    return GeneralizationSplit(name="opt_iml_paper", fully_held_out_categories=PAPER_HELD_OUT_CATEGORIES,
                               held_out_tasks=frozenset(held_out), supervised_eval_tasks=frozenset(supervised),
                               validation_tasks=frozenset(validation))


def niv2_official_split(tasks: Iterable[TaskInfo] | None = None) -> GeneralizationSplit:
    """Super-NaturalInstructions' own split: its 119 test tasks held out, no held-out categories."""
    tasks = list(load_catalog() if tasks is None else tasks)
    names = {t.name for t in tasks}
    return GeneralizationSplit(name="niv2_official", held_out_tasks=frozenset(_paper_niv2_test_names() & names))


def all_tasks_split(tasks: Iterable[TaskInfo] | None = None) -> GeneralizationSplit:
    """OPT-IML-Max: every task trainable (paper section 6.1)."""
    return GeneralizationSplit(name="all_tasks")


SPLITS: dict[str, Callable[..., GeneralizationSplit]] = {
    "opt_iml_paper": opt_iml_paper_split, "niv2_official": niv2_official_split, "all_tasks": all_tasks_split}


@gin.configurable
def get_split(name: str = "opt_iml_paper", tasks: Iterable[TaskInfo] | None = None) -> GeneralizationSplit:
    if name not in SPLITS:
        raise ValueError(f"unknown split {name!r}; known: {sorted(SPLITS)}")
    return SPLITS[name](tasks)


def evaluation_sources(split: GeneralizationSplit, tasks: Iterable[TaskInfo]) -> set[str]:
    """Data sources of the held-out evaluation tasks (fully held-out + partially supervised levels)."""
    srcs = {t.source_dataset for t in tasks
            if split.level(t) in ("fully_held_out", "partially_supervised") and t.source_dataset}
    if split.held_out_tasks & MMLU_TASKS:
        srcs.add("mmlu")
    return srcs


@gin.configurable
def trainable_tasks(split: GeneralizationSplit | str = "opt_iml_paper", tasks: Iterable[TaskInfo] | None = None,
                    exclude_shared_sources: bool = True) -> list[TaskInfo]:
    """Tasks a training mixture may use under `split`: never a task of a held-out category, never a held-out
    task, and (by default) never a task sharing a data source with a held-out evaluation task."""
    tasks = list(load_catalog() if tasks is None else tasks)
    if isinstance(split, str):
        split = get_split(split, tasks)
    blocked = evaluation_sources(split, tasks) if exclude_shared_sources else set()
    return [t for t in split.trainable(tasks) if not (t.source_dataset in blocked and split.level(t) is None)]
