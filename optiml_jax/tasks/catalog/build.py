"""Writes the project's catalog data files (`optiml_jax/tasks/catalog/*_tasks.tsv`) from the public task lists.

Task names, categories and source datasets are facts (no definitions or instances are written). Run:
    python -m optiml_jax.tasks.catalog.build --data ../shared/data --out tasks/catalog
Inputs: niv2/niv2_tasks.tsv, flan/flan2021_patterns.json, flan/flan_collection_info.csv,
promptsource/**/templates.yaml; the Reasoning/ExMix/T5/UnifiedSKG/Dialogue lists below come from the paper
(App. A.1/A.2; the UnifiedSKG list is that collection's 21 tasks).
"""

from __future__ import annotations

import argparse
import collections
import csv
import pathlib

from optiml_jax.tasks.catalog import categories as cats
from optiml_jax.tasks.catalog.entries import CATALOG_COLUMNS
from optiml_jax.sources.flan_reader import load_patterns, original_templates
from optiml_jax.sources.promptsource_reader import task_name as ps_task_name
from optiml_jax.sources.promptsource_templates import load_all_templates

# FLAN 2021 pattern keys that are several tasks (one per subset), as in the FLAN task registry.
FLAN_SUBSETS = {"anli": ["anli_r1", "anli_r2", "anli_r3"], "arc": ["arc_challenge", "arc_easy"],
                "wmt16_translate": [f"wmt16_translate_{p}" for p in ("csen", "deen", "fien", "roen", "ruen", "tren")],
                "para_crawl": ["para_crawl_enes"]}

REASONING = [  # paper App. A.1: 14 chain-of-thought datasets
    ("gsm8k", "gsm8k"), ("strategyqa", "strategyqa"), ("aqua", "aqua_rat"), ("coqa", "coqa"), ("cos_e", "cos_e"),
    ("creak", "creak"), ("ecqa", "ecqa"), ("esnli", "esnli"), ("math", "math"), ("proofwriter", "proofwriter"),
    ("qasc", "qasc"), ("qed", "qed"), ("sensemaking", "sensemaking"), ("winowhy", "winowhy")]
EXMIX = [  # paper App. A.1: the ExMix tasks that overlap no other collection
    ("cogs", "Text to Code"), ("shakespearizing_modern_english", "Style Transfer"), ("style_ptb", "Style Transfer"),
    ("gpt2_output_detection", "Text Categorization"), ("unimer_funql", "Text to Code"),
    ("ukp_argument_mining", "Text Categorization"), ("newsquizqa", "Question Generation"),
    ("dialoglue", "Intent Identification"), ("kilt_wned", "Entity Linking"), ("kilt_aidayago2", "Entity Linking"),
    ("wiki_toxicity", "Toxic Language Detection")]
T5 = [("wmt14_ende_v003", "Translation"), ("wmt14_enfr_v003", "Translation"), ("wmt15_enfr_v003", "Translation"),
      ("wmt16_enro_v003", "Translation"), ("wmt19_ende_v003", "Translation"), ("wmt_t2t_ende_v003", "Translation"),
      ("cnn_dailymail_v002", "Summarization")]
UNIFIEDSKG = [
    ("spider", "Text to Code"), ("sparc", "Text to Code"), ("cosql", "Text to Code"), ("grailqa", "Text to Code"),
    ("webqsp", "Text to Code"), ("mtop", "Text to Code"), ("compwebq", "Question Answering"),
    ("wikitq", "Question Answering"), ("wikisql", "Question Answering"), ("fetaqa", "Question Answering"),
    ("hybridqa", "Question Answering"), ("multimodalqa", "Question Answering"), ("sqa", "Question Answering"),
    ("tab_fact", "Fact Verification"), ("feverous", "Fact Verification"), ("sql2text", "Code to Text"),
    ("logic2text", "Data to Text"), ("totto", "Data to Text"), ("dart", "Data to Text"),
    ("multiwoz", "Dialogue State Tracking"), ("kvret", "Dialogue Generation")]
DIALOGUE = ["wizard_of_internet", "wizard_of_wikipedia", "blended_skill_talk", "convai2", "multi_session_chat",
            "light"]


def _row(name, collection, category, original, source, instruction_type, metric, full_seq=False, key=""):
    return {"name": name, "collection": collection, "category": category, "original_category": original,
            "source_dataset": cats.normalize_source(source), "instruction_type": instruction_type, "metric": metric,
            "full_sequence_loss": str(full_seq).lower(), "reader_key": key}


def niv2_rows(data: pathlib.Path) -> list[dict]:
    rows = []
    with open(data / "niv2" / "niv2_tasks.tsv", encoding="utf-8") as f:
        for r in csv.DictReader(f, delimiter="\t"):
            stem = r["task_file"].removesuffix(".json")
            category, original = cats.niv2_category(stem, r["categories"])
            source = r["flan_source_dataset"] if r["flan_source_dataset"] not in ("", "NA") else stem.split("_")[1]
            rows.append(_row("niv2_" + stem, "niv2", category, original, source, "task", "rouge_l", key=stem))
    return rows


def flan_rows(data: pathlib.Path) -> list[dict]:
    generic = {}
    with open(data / "flan" / "flan_collection_info.csv", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            if r["Source"] in ("FLAN", "FLAN/T0") and not r["Generic Task Category"].startswith("Inverted"):
                generic.setdefault(r["Dataset"], r["Generic Task Category"])
    rows = []
    for key, patterns in load_patterns(data / "flan" / "flan2021_patterns.json").items():
        metric = "accuracy" if any("{options_}" in p[0] for p in original_templates(patterns)) else "rouge_l"
        for ds in FLAN_SUBSETS.get(key, [key]):
            original = generic.get(ds) or generic.get(key) or ""
            category = cats.flan_category(key, original or None)
            source = key if key not in ("wmt16_translate",) else ds
            rows.append(_row("flan_" + ds, "flan", category, original, source, "instance", metric, key=key))
    return rows


def promptsource_rows(data: pathlib.Path) -> list[dict]:
    rows = []
    for key, templates in sorted(load_all_templates(data / "promptsource").items()):
        originals = [t for t in templates if t.original_task]
        if not originals:
            continue  # the paper uses original-task templates only
        with_choices = sum(t.answer_choices is not None for t in originals)
        metric = "accuracy" if with_choices * 2 > len(originals) else "rouge_l"
        top = key.split("/")[0]
        source = key.replace("/", "_") if top in ("glue", "super_glue", "Zaid", "craffel") else top
        if top in ("Zaid", "craffel"):
            source = key.split("/")[1].split("_")[0] if top == "Zaid" else "lambada"
        rows.append(_row(ps_task_name(key), "promptsource", cats.promptsource_category(key), "", source, "instance",
                         metric, key=key))
    return rows


def hand_rows() -> list[dict]:
    rows = [_row("cot_" + n, "reasoning", "Reasoning", "", src, "task", "rouge_l", key=n) for n, src in REASONING]
    rows += [_row("exmix_" + n, "exmix", c, "", n, "keyword", "rouge_l") for n, c in EXMIX]
    rows += [_row("t5_" + n, "t5", c, "", n.rsplit("_v00", 1)[0], "keyword", "rouge_l") for n, c in T5]
    rows += [_row("skg_" + n, "unifiedskg", c, "", n, "keyword", "rouge_l") for n, c in UNIFIEDSKG]
    rows += [_row("dialogue_" + n, "dialogue", "Dialogue Generation", "", n, "instance", "rouge_l", full_seq=True)
             for n in DIALOGUE]
    return rows


def write_tsv(path: pathlib.Path, rows: list[dict]) -> None:
    names = collections.Counter(r["name"] for r in rows)
    dup = [n for n, c in names.items() if c > 1]
    if dup:
        raise ValueError(f"duplicate task names in {path}: {dup[:5]}")
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CATALOG_COLUMNS, delimiter="\t", lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="../shared/data")
    p.add_argument("--out", default="tasks/catalog")
    a = p.parse_args(argv)
    data, out = pathlib.Path(a.data), pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for fname, rows in (("niv2_tasks.tsv", niv2_rows(data)), ("flan_tasks.tsv", flan_rows(data)),
                        ("promptsource_tasks.tsv", promptsource_rows(data)), ("other_tasks.tsv", hand_rows())):
        write_tsv(out / fname, rows)
        print(f"wrote {out / fname}: {len(rows)} tasks")
    stems = [s.strip() for s in (data / "niv2" / "test_tasks.txt").read_text().splitlines() if s.strip()]
    (out / "niv2_test_tasks.txt").write_text("\n".join(stems) + "\n")
    print(f"wrote {out / 'niv2_test_tasks.txt'}: {len(stems)} task names")


if __name__ == "__main__":
    main()
