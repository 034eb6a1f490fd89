"""Bad input to gin-driven registration fails with an error naming the directory, file, task or binding at fault."""

import pathlib
import importlib.util
import json

import gin
import pytest

from optiml_jax.testing.source_files import (OPT_IML_BENCH_GIN, MINI_TOKENIZER, gin_bindings, write_cot_tsv, write_jsonl, write_niv2_task,
                                 write_promptsource)
from optiml_jax.tasks.catalog import entries as catalog
from optiml_jax.sources.raw_examples import SourceDataError
from optiml_jax.cli.tasks import main


@pytest.fixture(autouse=True)
def _clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


def _list(**macros):
    return main(["list", "--no_catalog", "--prefix", "zzz_nothing", "--gin_file", str(OPT_IML_BENCH_GIN),
                 *gin_bindings(OPT_TOKENIZER_DIR=str(MINI_TOKENIZER), **macros)])


def test_missing_directories_name_the_directory_and_macro(tmp_path):
    with pytest.raises(SystemExit, match=r"NIv2 data directory does not exist \(set NIV2_DATA_DIR\).*nowhere"):
        _list(NIV2_DATA_DIR=str(tmp_path / "nowhere"))
    with pytest.raises(SystemExit, match=r"CoT data directory does not exist.*no_cot"):
        _list(COT_DATA_DIR=str(tmp_path / "no_cot"))
    with pytest.raises(SystemExit, match=r"PromptSource local dataset directory .*PROMPTSOURCE_DATA_DIR.*no_ps_data"):
        (tmp_path / "templates").mkdir()
        _list(PROMPTSOURCE_TEMPLATES_DIR=str(tmp_path / "templates"), PROMPTSOURCE_DATA_DIR=str(tmp_path / "no_ps_data"))
    with pytest.raises(SystemExit, match=r"PromptSource needs both PROMPTSOURCE_TEMPLATES_DIR and PROMPTSOURCE_DATA_DIR"):
        _list(PROMPTSOURCE_TEMPLATES_DIR=str(tmp_path / "templates"))
    with pytest.raises(SystemExit, match=r"no task\*\.json files .*empty_niv2"):
        (tmp_path / "empty_niv2").mkdir()
        _list(NIV2_DATA_DIR=str(tmp_path / "empty_niv2"))
    with pytest.raises(SystemExit, match=r"OPT tokenizer|vocab\.json|no_tokenizer"):
        main(["list", "--no_catalog", "--gin_file", str(OPT_IML_BENCH_GIN), f"--gin.OPT_TOKENIZER_DIR={tmp_path / 'no_tokenizer'}",
              f"--gin.NIV2_DATA_DIR={tmp_path}"])


def test_empty_and_broken_task_files_name_file_and_task(tmp_path):
    # training tasks are read at registration (the training mixture needs their example counts)
    empty = tmp_path / "empty"
    write_niv2_task(empty, "task001_quoref_question_generation", n=0)
    with pytest.raises(SystemExit, match=r"task has no instances.*task001_quoref_question_generation\.json"
                                         r".*niv2_task001_quoref_question_generation"):
        _list(NIV2_DATA_DIR=str(empty))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "task002_quoref_answer_generation.json").write_text('{"Definition": ["x"], "Instances": [')
    with pytest.raises(SystemExit, match=r"not valid JSON.*task002_quoref_answer_generation\.json"):
        _list(NIV2_DATA_DIR=str(broken))
    cot = tmp_path / "cot"
    write_cot_tsv(cot, "creak")
    (cot / "ecqa_train.tsv").write_text("question only\n")
    with pytest.raises(SystemExit, match=r"expected 3 tab-separated fields.*ecqa_train\.tsv.*cot_ecqa.*line 1"):
        _list(COT_DATA_DIR=str(cot))
    # evaluation-only tasks are read lazily: the error comes on first use, naming the file and task
    lazy = tmp_path / "lazy"
    write_niv2_task(lazy, "task001_quoref_question_generation", n=5)
    (lazy / "task1152_bard_analogical_reasoning_causation.json").write_text('{"Definition": ["x"]}')
    assert _list(NIV2_DATA_DIR=str(lazy)) == 0
    with pytest.raises(SourceDataError, match=r"missing field 'Instances'.*task1152_bard_analogical_reasoning_causation"
                                             r"\.json.*niv2_task1152_bard_analogical_reasoning_causation"):
        main(["inspect", "niv2_task1152_bard_analogical_reasoning_causation"])


def test_bad_configured_sources_fail_at_registration(tmp_path):
    present = write_jsonl(tmp_path / "ok.jsonl", [{"src": "a", "tgt": "b"}])
    with pytest.raises(SystemExit, match=r"JSONL file for split 'test' does not exist.*missing\.jsonl.*skg_spider"):
        _list(EXTRA_JSONL_SOURCES={"skg_spider": {"train": str(present), "test": str(tmp_path / "missing.jsonl")}})
    with pytest.raises(SystemExit, match=r"EXTRA_JSONL_SOURCES: task is not in the catalog.*my_new_task"):
        _list(EXTRA_JSONL_SOURCES={"my_new_task": {"train": str(present)}})
    with pytest.raises(SystemExit, match=r"TFDS_SOURCES entry needs 'name'.*flan_imdb_reviews"):
        _list(TFDS_SOURCES={"flan_imdb_reviews": {"splits": {"train": "train"}}})
    ps_t, ps_d = tmp_path / "ps_t", tmp_path / "ps_d"
    write_promptsource(ps_t, ps_d, "ag_news", "ag")
    write_jsonl(ps_d / "imdb" / "train.jsonl", [{"text": "x", "label": 0}])  # data without templates
    with pytest.raises(SystemExit, match=r"no PromptSource templates\.yaml.*imdb/templates\.yaml.*ps_imdb"):
        _list(PROMPTSOURCE_TEMPLATES_DIR=str(ps_t), PROMPTSOURCE_DATA_DIR=str(ps_d))
    (tmp_path / "ps_typo" / "agnews").mkdir(parents=True)
    with pytest.raises(SystemExit, match=r"no catalog dataset found under the PromptSource data directory.*ps_typo"):
        _list(PROMPTSOURCE_TEMPLATES_DIR=str(ps_t), PROMPTSOURCE_DATA_DIR=str(tmp_path / "ps_typo"))
    patterns = tmp_path / "patterns.json"
    patterns.write_text(json.dumps({"rte": [["{premise}", "{answer}"]]}))
    write_jsonl(tmp_path / "flan" / "ag_news_subset" / "train.jsonl", [{"text": "x", "answer": "y"}])
    with pytest.raises(SystemExit, match=r"no patterns for 'ag_news_subset'.*patterns\.json.*flan_ag_news_subset"):
        _list(FLAN_TEMPLATES_FILE=str(patterns), FLAN_DATA_DIR=str(tmp_path / "flan"))


def test_catalog_dir_is_the_installed_package_folder():
    import importlib.resources

    assert catalog.CATALOG_DIR == pathlib.Path(str(importlib.resources.files("optiml_jax.tasks.catalog")))
    assert (catalog.CATALOG_DIR / "niv2_tasks.tsv").is_file()

