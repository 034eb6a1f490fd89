"""Registering OPT-IML Bench from gin with no code per reader: NIv2, CoT, PromptSource, FLAN, JSONL (and TFDS),
through `python -m optiml_jax.tasks` and `gin/bench/opt_iml_bench.gin`."""

import os
import pathlib
import re
import subprocess
import sys

import gin
import pytest

from optiml_jax.testing.source_files import (OPT_IML_BENCH_GIN, MINI_TOKENIZER, gin_bindings, marker, write_cot_tsv, write_flan,
                                 write_jsonl, write_niv2_task, write_promptsource)
from optiml_jax.tasks import mixtures, registry
from optiml_jax.cli.tasks import main

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


def _row(out: str, task: str) -> str:
    m = re.search(rf"^{task}\s.*$", out, re.M)
    assert m, f"{task} not listed:\n{out}"
    return m[0]


def test_every_configured_reader_registers_with_split_policy(tmp_path, capsys):
    niv2, cot = tmp_path / "niv2", tmp_path / "cot"
    write_niv2_task(niv2, "task001_quoref_question_generation")
    write_niv2_task(niv2, "task1152_bard_analogical_reasoning_causation")
    write_niv2_task(niv2, "task9999_not_in_the_catalog")  # logged and ignored
    write_cot_tsv(cot, "creak")
    write_cot_tsv(cot, "gsm8k")
    ps_t, ps_d = tmp_path / "ps_templates", tmp_path / "ps_data"
    write_promptsource(ps_t, ps_d, "ag_news", "psag")
    write_promptsource(ps_t, ps_d, "super_glue/copa", "pscopa")
    write_flan(tmp_path / "flan" / "patterns.json", tmp_path / "flan_data")
    spider = {s: write_jsonl(tmp_path / "spider" / f"{s}.jsonl",
                             [{"src": f"SQL for {marker('spider' + s, i)}", "tgt": f"SELECT {i}"} for i in range(7)])
              for s in ("train", "test")}
    args = ["list", "--no_catalog", "--generalization_split", "opt_iml_paper", "--gin_file", str(OPT_IML_BENCH_GIN),
            *gin_bindings(NIV2_DATA_DIR=str(niv2), COT_DATA_DIR=str(cot), PROMPTSOURCE_TEMPLATES_DIR=str(ps_t),
                          PROMPTSOURCE_DATA_DIR=str(ps_d), FLAN_TEMPLATES_FILE=str(tmp_path / "flan" / "patterns.json"),
                          FLAN_DATA_DIR=str(tmp_path / "flan_data"), OPT_TOKENIZER_DIR=str(MINI_TOKENIZER),
                          EXTRA_JSONL_SOURCES={"skg_spider": {k: str(v) for k, v in spider.items()}},
                          EVAL_EXAMPLES=10)]
    assert main(args) == 0
    out = capsys.readouterr().out
    # (task, level under opt_iml_paper, counts): pools give their first 10 instances to `test`; datasets with
    # their own splits evaluate on `validation` (PromptSource: every original template, 12 rows x 2 = 24);
    # held-out tasks never get a `train` split; training-only tasks only `train`.
    expected = {
        "niv2_task001_quoref_question_generation": ("train", "train=30"),
        "niv2_task1152_bard_analogical_reasoning_causation": ("fully_held_out", "test=10"),
        "cot_creak": ("train", "train=30"),
        "cot_gsm8k": ("partially_supervised", "test=10"),
        "ps_ag_news": ("train", "train=12"),
        "ps_super_glue_copa": ("fully_held_out", "test=24"),
        "flan_ag_news_subset": ("train", "train=12"),
        "flan_rte": ("fully_held_out", "test=12"),
        "skg_spider": ("fully_supervised", "train=7 test=7"),
    }
    for task, (level, counts) in expected.items():
        row = _row(out, task)
        assert re.search(rf"\s{level}\s+{counts}$", row), row
    assert "niv2_task9999" not in out
    assert set(mixtures.resolve_rates("opt_iml_bench_train")) == {
        "niv2_task001_quoref_question_generation", "cot_creak", "ps_ag_news", "flan_ag_news_subset", "skg_spider"}
    assert set(mixtures.resolve_rates("opt_iml_bench_eval_fully_held_out")) == {
        "niv2_task1152_bard_analogical_reasoning_causation", "ps_super_glue_copa", "flan_rte"}
    # Readers really produced the formats' content: FLAN options, PromptSource templates, CoT targets, JSONL rows.
    flan = registry.load_raw_examples("flan_ag_news_subset", "train")[0]
    assert "OPTIONS:\n- World\n- Sports" in flan["input"] and flan["target"] in ("World", "Sports")
    copa = registry.load_raw_examples("ps_super_glue_copa", "test")
    assert {e["input"].startswith("What is this text about?") for e in copa} == {True, False}
    assert registry.load_raw_examples("cot_creak", "train")[0]["target"].endswith("So the answer is yes.")
    assert registry.load_raw_examples("skg_spider", "test")[3]["input"] == f"SQL for {marker('spidertest', 3)}"
    # inspect defaults to the only split of an evaluation-only task
    assert main(["inspect", "ps_super_glue_copa", "--num_examples", "1"]) == 0
    assert "validation news mkpscopavalidationx0" in capsys.readouterr().out


def test_tfds_source_from_gin(tmp_path, capsys):
    pytest.importorskip("importlib_resources", reason="tensorflow_datasets (via etils) needs importlib_resources "
                        "to prepare a dataset; install it (setup.py PIPELINE)")
    import tensorflow as tf
    import tensorflow_datasets as tfds

    def ds(split, n):
        return tf.data.Dataset.from_tensor_slices({"review": [f"{split} review {marker('tfds' + split, i)}"
                                                              for i in range(n)],
                                                   "label": ["positive", "negative"] * (n // 2)})
    tfds.dataset_builders.store_as_tfds_dataset(
        name="toy_reviews", version="1.0.0", data_dir=str(tmp_path),
        split_datasets={"train": ds("train", 6), "validation": ds("validation", 4)},
        features=tfds.features.FeaturesDict({"review": tfds.features.Text(), "label": tfds.features.Text()}))
    spec = {"flan_imdb_reviews": {"name": "toy_reviews:1.0.0", "data_dir": str(tmp_path), "source_key": "review",
                                  "target_key": "label", "instruction": "Is this review positive?",
                                  "splits": {"train": "train", "validation": "validation"}}}
    assert main(["list", "--no_catalog", "--prefix", "flan_imdb", "--generalization_split", "opt_iml_paper",
                 "--gin_file", str(OPT_IML_BENCH_GIN),
                 *gin_bindings(TFDS_SOURCES=spec, OPT_TOKENIZER_DIR=str(MINI_TOKENIZER))]) == 0
    assert re.search(r"flan_imdb_reviews\s.*\strain\s+train=6$", capsys.readouterr().out, re.M)
    exs = registry.load_raw_examples("flan_imdb_reviews", "train")  # TFDS shuffles when preparing: compare as sets
    assert {(e["input"], e["target"]) for e in exs} == {
        (f"train review {marker('tfdstrain', i)}", ["positive", "negative"][i % 2]) for i in range(6)}
    assert {e["instruction"] for e in exs} == {"Is this review positive?"}


def _run_cli(args, cwd=REPO):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-m", "optiml_jax.tasks", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_issue_inspect_command_on_fixtures(tmp_path):
    niv2 = tmp_path / "natural-instructions" / "tasks"
    write_niv2_task(niv2, "task062_bigbench_repeat_copy_logic", n=5, tag="copy")
    r = _run_cli(["inspect", "niv2_task062_bigbench_repeat_copy_logic", "--gin_file=gin/bench/opt_iml_bench.gin",
                  f"--gin.NIV2_DATA_DIR={niv2.parent}", f"--gin.OPT_TOKENIZER_DIR={MINI_TOKENIZER}",
                  "--num_examples", "2"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("===== example") == 2
    assert "Answer the request about copy." in r.stdout and f"answer {marker('copy', 1)}" in r.stdout


def test_issue_inspect_command_on_real_niv2(shared_data):
    # exactly the issue's command line, relative paths from the repository root, the real OPT tokenizer
    r = _run_cli(["inspect", "niv2_task062_bigbench_repeat_copy_logic", "--gin_file=gin/bench/opt_iml_bench.gin",
                  "--gin.NIV2_DATA_DIR=../shared/data/niv2/tasks", "--gin.OPT_TOKENIZER_DIR=../shared/data/opt_tokenizer",
                  "--num_examples", "1"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "===== example 0 [task062-" in r.stdout
    assert "natural language instructions" in r.stdout and "--- target:" in r.stdout


def test_opt_iml_bench_registers_in_the_ids_of_any_tokenizer_dir(tmp_path):
    """TOKENIZER_DIR may be any model family's tokenizer.json (here Llama 3-shaped): OPT-IML Bench's tasks are
    tokenized with it and their examples end with its eos; OPT_TOKENIZER_DIR keeps working for OPT's BPE."""
    from optiml_jax.data.task_cache import task_tokens
    from optiml_jax.testing.family_tokenizers import write_family_tokenizer
    from optiml_jax.vocabularies import HFTokenizerVocabulary, OPTVocabulary

    niv2 = tmp_path / "tasks"
    write_niv2_task(niv2, "task001_quoref_question_generation", n=6, tag="quo")
    tok = write_family_tokenizer(tmp_path / "llama3", "llama3", ["Answer the request about quo."] * 50, bpe_size=300)
    name = "niv2_task001_quoref_question_generation"
    assert main(["list", "--no_catalog", "--gin_file", str(OPT_IML_BENCH_GIN),
                 *gin_bindings(NIV2_DATA_DIR=str(niv2), TOKENIZER_DIR=str(tok))]) == 0
    vocab = registry.get_task(name).vocabulary
    assert isinstance(vocab, HFTokenizerVocabulary)
    ids, _ = task_tokens(name, "train").example(0)
    assert ids[-1] == vocab.tokenizer.token_to_id("<|end_of_text|>")
    gin.clear_config()
    assert main(["list", "--no_catalog", "--gin_file", str(OPT_IML_BENCH_GIN),
                 *gin_bindings(NIV2_DATA_DIR=str(niv2), OPT_TOKENIZER_DIR=str(MINI_TOKENIZER))]) == 0
    assert isinstance(registry.get_task(name).vocabulary, OPTVocabulary)
    with pytest.raises(SystemExit, match="TOKENIZER_DIR"):
        gin.clear_config()
        main(["list", "--no_catalog", "--gin_file", str(OPT_IML_BENCH_GIN), *gin_bindings(NIV2_DATA_DIR=str(niv2))])
