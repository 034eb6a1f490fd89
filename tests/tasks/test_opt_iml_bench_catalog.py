"""OPT-IML Bench catalog coverage, category mapping and generalization splits."""

import csv

import pytest

from optiml_jax.tasks.catalog import categories
from optiml_jax.tasks.catalog.entries import load_catalog
from optiml_jax.tasks.catalog.report import format_markdown, report
from optiml_jax.tasks.catalog.splits import PAPER_HELD_OUT_CATEGORIES, get_split, trainable_tasks
from optiml_jax.tasks.metadata import TaskInfo


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def test_catalog_covers_every_niv2_task(shared_data, catalog):
    with open(shared_data / "niv2" / "niv2_tasks.tsv", encoding="utf-8") as f:
        stems = {r["task_file"].removesuffix(".json") for r in csv.DictReader(f, delimiter="\t")}
    names = {t.name for t in catalog if t.collection == "niv2"}
    assert names == {f"niv2_{s}" for s in stems} and len(names) == 1657
    niv2_cats = {t.category for t in catalog if t.collection == "niv2"}
    assert niv2_cats <= categories.NIV2_TAXONOMY  # FLAN refinements mapped back onto NIv2's taxonomy


def test_catalog_collections_and_names_unique(catalog):
    names = [t.name for t in catalog]
    assert len(names) == len(set(names))
    by = {c: sum(t.collection == c for t in catalog) for c in ("flan", "promptsource", "reasoning", "unifiedskg", "t5")}
    assert by == {"flan": 69, "promptsource": 259, "reasoning": 14, "unifiedskg": 21, "t5": 7}


def test_category_mapping_rules():
    assert categories.niv2_category("task1146_country_capital", "Country Capital Prediction") == (
        "Misc.", "Country Capital Prediction")
    assert categories.niv2_category("task1529_scitail1.1_classification", "NA")[0] == "Textual Entailment"
    assert categories.niv2_category("task1664_winobias_text_generation", "Coreference Resolution")[0] == \
        "Stereotype Detection"
    assert categories.flan_category("anli", "Natural Language Inference") == "Textual Entailment"
    assert categories.flan_category("copa", "Next Sentence Prediction") == "Cause Effect Classification"
    assert categories.promptsource_category("super_glue/copa") == "Cause Effect Classification"
    assert categories.normalize_source("super_glue/boolq") == categories.normalize_source("bool_q") == "boolq"
    with pytest.raises(ValueError, match="NIV2_NAME_RULES"):
        categories.niv2_category("task9999_unknown_thing", "NA")


def test_no_held_out_category_task_is_trainable(catalog):
    split = get_split("opt_iml_paper", catalog)
    train = trainable_tasks(split, catalog)
    assert not [t.name for t in train if t.category in PAPER_HELD_OUT_CATEGORIES]
    assert not {t.name for t in train} & split.held_out_tasks
    # every validation task of Table 15 that the catalog names is an evaluation task
    for name in ("flan_copa", "ps_super_glue_copa", "niv2_task1557_jfleg_answer_generation", "cot_gsm8k",
                 "flan_newsroom", "ps_jigsaw_unintended_bias", "flan_squad_v1"):
        assert name in split.validation_tasks, name
    levels = {t.name: split.level(t) for t in catalog}
    assert levels["niv2_task1152_bard_analogical_reasoning_causation"] == "fully_held_out"
    assert levels["cot_strategyqa"] == "partially_supervised" and levels["skg_spider"] == "fully_supervised"
    assert "skg_spider" in {t.name for t in train}  # fully supervised tasks are trained on
    # shared data sources are excluded: FLAN's DART shares a source with held-out UnifiedSKG DART
    assert "flan_dart" not in {t.name for t in train} and "flan_dart" in {t.name for t in split.trainable(catalog)}


def test_trainable_excludes_constructed_eval_tasks():
    tasks = [TaskInfo("a", "niv2", "Textual Entailment", source_dataset="x"),
             TaskInfo("b", "niv2", "Summarization", source_dataset="y"),
             TaskInfo("c", "flan", "Summarization", source_dataset="y"),
             TaskInfo("d", "flan", "Translation", source_dataset="z")]
    from optiml_jax.tasks.metadata import GeneralizationSplit
    split = GeneralizationSplit("t", frozenset({"Textual Entailment"}), frozenset({"b"}))
    assert [t.name for t in trainable_tasks(split, tasks)] == ["d"]
    assert [t.name for t in trainable_tasks(split, tasks, exclude_shared_sources=False)] == ["c", "d"]
    with pytest.raises(ValueError, match="unknown split"):
        get_split("nope", tasks)


def test_report_counts_next_to_table1():
    r = report("opt_iml_paper")
    assert r["collections"]["niv2"]["tasks"] == 1657 and r["collections"]["niv2"]["paper_tasks"] == 1613
    assert r["collections"]["crossfit"]["tasks"] == 0 and r["collections"]["crossfit"]["paper_tasks"] == 159
    t = r["totals"]
    assert t["train"] + t["validation"] + t["test"] <= t["tasks"] + t["eval_only_tasks_outside_catalog"]
    assert 1300 < t["train"] < 1700
    md = format_markdown(r)
    assert "| niv2 | 1657 | 1613 |" in md
