"""`--gin.INITIAL_CHECKPOINT_PATH=<transformers directory>` is enough to fine-tune (issue 22): with no model file the
model's family and shape come from the directory's config.json and the tokenizer from its tokenizer files; the
mini-benchmark is re-registered in that tokenizer's ids (same text, other ids). A model file that disagrees with
config.json, a tokenizer larger than the model's vocabulary, no model at all, or a user's task in another vocabulary
are exit 2 before any device work, leaving MODEL_DIR untouched.

The fast tests need only config.json + tokenizer files (every check runs before weights are read); the end-to-end
fine-tune (slow) builds a random transformers Llama 3 / Qwen2 checkpoint and trains 2 steps through the CLI."""

import json
import pathlib
import shutil
import sys

import numpy as np
import pytest

from optiml_jax.checkpoints import config_to_hf, config_to_hf_llama
from optiml_jax.cli import train as train_cli
from optiml_jax.models import LlamaConfig, OPTConfig
from optiml_jax.tasks.mini_bench import TASKS, generate_task
from optiml_jax.tasks.mini_bench import registration as mini_bench
from optiml_jax.testing.family_tokenizers import write_family_tokenizer
from optiml_jax.vocabularies import HFTokenizerVocabulary
from optiml_jax.vocabularies.special_ids import special_ids_of

MODEL_TYPE = {"llama3": "llama", "qwen2": "qwen2"}
TINY = ["--gin.TRAIN_STEPS=2", "--gin.BATCH_SIZE=8", "--gin.TASK_FEATURE_LENGTHS={'targets': 128}",
        "--gin.COMPUTE_DTYPE='float32'", "--gin.CHECKPOINT_PERIOD=2", "--no_progress"]


@pytest.fixture(autouse=True)
def mini_bench_back_in_its_own_ids():
    """A test here re-registers the mini-benchmark in another tokenizer's ids; later tests in this process get it
    back in its own BPE."""
    yield
    if mini_bench.registered_vocabulary() is not mini_bench.VOCABULARY:
        mini_bench.register()


def _texts():
    return [t for info in TASKS[:8] for ex in generate_task(info.name)["train"][:40]
            for t in (ex["instruction"], ex["input"], " " + ex["target"])]


@pytest.fixture(scope="module")
def family_tokenizers(tmp_path_factory):
    root = tmp_path_factory.mktemp("family_tok")
    texts = _texts()
    return {f: write_family_tokenizer(root / f, f, texts, bpe_size=500) for f in MODEL_TYPE}


def _llama_config(family, ids, vocab_size, **overrides):
    kind = MODEL_TYPE[family]
    kw = dict(vocab_size=vocab_size, hidden_size=96, num_heads=4, num_kv_heads=2, ffn_dim=112, num_layers=2,
              max_position_embeddings=256, dtype="float32", tie_word_embeddings=kind == "qwen2",
              attention_bias=kind == "qwen2", hf_model_type=kind, bos_token_id=ids.bos, eos_token_id=ids.eos_id,
              pad_token_id=None if ids.pad_from_eos else ids.pad)
    kw.update(overrides)
    return LlamaConfig.preset("tiny", **kw)


def _config_only_dir(path, family, tok_dir, **overrides) -> pathlib.Path:
    """A Hugging Face directory as far as every pre-device check reads it: config.json + the tokenizer files."""
    ids = special_ids_of(HFTokenizerVocabulary(tok_dir))
    vocab_size = overrides.pop("vocab_size", ids.vocab_size)
    path.mkdir(parents=True)
    config = _llama_config(family, ids, vocab_size, **overrides)
    (path / "config.json").write_text(json.dumps(config_to_hf_llama(config)))
    for f in tok_dir.iterdir():
        shutil.copy(f, path / f.name)
    return path


def _train(capsys, *args):
    rc = train_cli.main(list(args))
    return rc, capsys.readouterr().err


def test_no_model_file_and_no_checkpoint_is_exit_2(tmp_path, capsys):
    run = tmp_path / "run"
    rc, err = _train(capsys, "--gin_file=runs/train.gin", f"--gin.MODEL_DIR={run}",
                     "--gin.MIXTURE_OR_TASK_NAME=mini_bench_train", *TINY)
    assert rc == 2, err
    assert "no model to train: give a model file" in err and "INITIAL_CHECKPOINT_PATH" in err
    assert not run.exists()


def test_model_file_disagreeing_with_config_json_is_exit_2(tmp_path, capsys, family_tokenizers):
    hf = _config_only_dir(tmp_path / "hf", "llama3", family_tokenizers["llama3"])
    run = tmp_path / "run"
    rc, err = _train(capsys, "--gin_file=runs/finetune.gin", "--gin_file=models/llama_tiny.gin",
                     f"--gin.INITIAL_CHECKPOINT_PATH={hf}", f"--gin.MODEL_DIR={run}",
                     "--gin.MIXTURE_OR_TASK_NAME=mini_bench_train", *TINY)
    assert rc == 2, err
    # llama_tiny.gin: 64 wide, 128256 ids; the directory: 96 wide, the tokenizer's ids
    assert "hidden_size: 64 in train.model_config (models/llama_tiny.gin), 96 in " + str(hf / "config.json") in err
    assert "vocab_size: 128256 in train.model_config" in err
    assert not run.exists()


def test_tokenizer_larger_than_the_checkpoint_s_vocabulary_is_exit_2(tmp_path, capsys, family_tokenizers):
    ids = special_ids_of(HFTokenizerVocabulary(family_tokenizers["qwen2"]))
    hf = _config_only_dir(tmp_path / "hf", "qwen2", family_tokenizers["qwen2"], vocab_size=ids.vocab_size - 16)
    run = tmp_path / "run"
    rc, err = _train(capsys, "--gin_file=runs/finetune.gin", f"--gin.INITIAL_CHECKPOINT_PATH={hf}",
                     f"--gin.MODEL_DIR={run}", "--gin.MIXTURE_OR_TASK_NAME=mini_bench_train", *TINY)
    assert rc == 2, err
    assert f"has {ids.vocab_size} ids but the model's vocab_size is {ids.vocab_size - 16}" in err
    assert not run.exists()


def test_a_user_task_in_another_vocabulary_is_exit_2(tmp_path, capsys, family_tokenizers):
    hf = _config_only_dir(tmp_path / "hf", "llama3", family_tokenizers["llama3"])
    run = tmp_path / "run"
    rc, err = _train(capsys, "--gin_file=runs/finetune.gin", f"--gin.INITIAL_CHECKPOINT_PATH={hf}",
                     f"--gin.MODEL_DIR={run}", "--gin.MIXTURE_OR_TASK_MODULE=tasks.example_seqio_tasks",
                     "--gin.MIXTURE_OR_TASK_NAME=example_mixture", *TINY)
    assert rc == 2, err
    assert "task 'example_" in err and f"vocabulary {mini_bench.VOCABULARY.path}" in err
    assert f"the tokenizer of INITIAL_CHECKPOINT_PATH = '{hf}'" in err
    assert not run.exists()


def test_model_config_from_checkpoint_reads_config_json(tmp_path, family_tokenizers):
    from optiml_jax.training.model_config import model_config_from_checkpoint

    hf = _config_only_dir(tmp_path / "hf", "qwen2", family_tokenizers["qwen2"])
    raw = json.loads((hf / "config.json").read_text())
    got = model_config_from_checkpoint(str(hf), dtype="float32", dropout_rate=0.05, scan_layers=True)
    assert isinstance(got, LlamaConfig) and got.hf_model_type == raw["model_type"] == "qwen2"
    assert (got.hidden_size, got.num_layers, got.num_heads, got.num_kv_heads, got.ffn_dim, got.vocab_size) == (
        raw["hidden_size"], raw["num_hidden_layers"], raw["num_attention_heads"], raw["num_key_value_heads"],
        raw["intermediate_size"], raw["vocab_size"])
    assert got.tie_word_embeddings is True and got.attention_bias is True  # Qwen2: tied, q/k/v biases
    assert (got.dtype, got.dropout_rate, got.scan_layers) == ("float32", 0.05, True)  # the run's choices

    opt = tmp_path / "opt"
    opt.mkdir()
    (opt / "config.json").write_text(json.dumps(config_to_hf(OPTConfig.preset("tiny", vocab_size=2048))))
    got = model_config_from_checkpoint(str(opt))
    assert isinstance(got, OPTConfig) and (got.hidden_size, got.num_layers, got.vocab_size) == (64, 2, 2048)


def test_mini_bench_is_read_in_the_checkpoint_s_ids_with_the_same_text(tmp_path, family_tokenizers):
    from optiml_jax.data.mixture_names import ensure_registered, run_tokenizer
    from optiml_jax.data.task_cache import task_tokens

    hf = _config_only_dir(tmp_path / "hf", "llama3", family_tokenizers["llama3"])
    vocab = HFTokenizerVocabulary(hf)
    name = "mini_bench_niv2_multiply"
    before = task_tokens(name, "validation")
    opt_ids = [list(before.example(j)[0]) for j in range(5)]
    ensure_registered("mini_bench_train", tokenizer=run_tokenizer(None, hf), match_tokenizer=True)
    after = task_tokens(name, "validation")
    ids = special_ids_of(vocab)
    for j in range(5):
        new, _ = after.example(j)
        assert new[-1] == ids.eos_id and max(new) < ids.vocab_size
        assert list(new) != opt_ids[j]
        assert vocab.decode(list(new)) == mini_bench.VOCABULARY.decode(opt_ids[j])  # text unchanged
    ensure_registered("mini_bench_train", tokenizer=None, match_tokenizer=True)  # a run without: its own BPE again
    assert [list(task_tokens(name, "validation").example(j)[0]) for j in range(5)] == opt_ids


@pytest.mark.slow
@pytest.mark.parametrize("family", list(MODEL_TYPE))
def test_fine_tune_a_transformers_directory_with_nothing_but_its_path(family, tmp_path, capsys, monkeypatch,
                                                                      family_tokenizers):
    pytest.importorskip("torch")
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
    from hf_llama_peers import hf_model

    from optiml_jax.data import stream as stream_lib
    from optiml_jax.testing import assert_batch_contract

    tok_dir = family_tokenizers[family]
    ids = special_ids_of(HFTokenizerVocabulary(tok_dir))
    hf = tmp_path / "hf"
    hf_model(_llama_config(family, ids, ids.vocab_size), seed=1).save_pretrained(hf, safe_serialization=True)
    for f in tok_dir.iterdir():
        shutil.copy(f, hf / f.name)
    fed = []
    real = stream_lib.TrainStream.get_batch_with_stats

    def recorded(self, step):
        batch, stats = real(self, step)
        fed.append(batch)
        return batch, stats

    monkeypatch.setattr(stream_lib.TrainStream, "get_batch_with_stats", recorded)
    run = tmp_path / "run"
    rc, err = _train(capsys, "--gin_file=runs/finetune.gin", f"--gin.INITIAL_CHECKPOINT_PATH={hf}",
                     f"--gin.MODEL_DIR={run}", "--gin.MIXTURE_OR_TASK_NAME=mini_bench_train", *TINY)
    assert rc == 0, err
    raw = json.loads((hf / "config.json").read_text())
    ours = json.loads((run / "model_config.json").read_text())
    assert ours["family"] == "llama" and ours["hf_model_type"] == raw["model_type"]
    for field, hf_field in [("hidden_size", "hidden_size"), ("num_layers", "num_hidden_layers"),
                            ("num_heads", "num_attention_heads"), ("num_kv_heads", "num_key_value_heads"),
                            ("ffn_dim", "intermediate_size"), ("vocab_size", "vocab_size"),
                            ("max_position_embeddings", "max_position_embeddings"),
                            ("tie_word_embeddings", "tie_word_embeddings")]:
        assert ours[field] == raw[hf_field], field
    assert (ours["bos_token_id"], ours["eos_token_id"]) == (ids.bos, ids.eos_id)  # the tokenizer's, not Llama 3's
    assert ours["dropout_rate"] == 0.1 and ours["dtype"] == "float32"  # finetune.gin's DROPOUT_RATE, COMPUTE_DTYPE
    assert fed, "the trainer read no batch"
    for batch in fed:  # the tokenizer's sequences: its bos (Qwen2: none), its eos, its pad
        assert_batch_contract(batch, batch_size=8, length=128, special_ids=ids)
        assert int(np.max(batch["decoder_target_tokens"])) < ids.vocab_size
    record = json.loads((run / "run.json").read_text())
    assert record["data"]["tokenizer"] == str(hf.resolve()) and record["data"]["vocab_size"] == ids.vocab_size
    assert (run / "tokenizer.json").read_bytes() == (hf / "tokenizer.json").read_bytes()  # kept for eval/export


@pytest.mark.slow
def test_eval_and_infer_take_the_same_transformers_directory(tmp_path, capsys, family_tokenizers):
    """`infer` on the directory generates what transformers' greedy `generate` does (its tokenizer, its bos, its
    stop id); `eval` runs its suites from the directory alone."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
    from hf_llama_peers import hf_model

    from optiml_jax.cli import eval as eval_cli, infer as infer_cli

    tok_dir = family_tokenizers["llama3"]
    ids = special_ids_of(HFTokenizerVocabulary(tok_dir))
    hf = tmp_path / "hf"
    model = hf_model(_llama_config("llama3", ids, ids.vocab_size), seed=3)
    model.save_pretrained(hf, safe_serialization=True)
    for f in tok_dir.iterdir():
        shutil.copy(f, hf / f.name)
    prompt = "Reverse the word: cat"
    tok = transformers.AutoTokenizer.from_pretrained(hf)
    inputs = torch.tensor([tok(prompt).input_ids])
    assert inputs[0, 0].item() == ids.bos  # the family's bos, prepended by its tokenizer
    new = model.generate(inputs, max_new_tokens=5, do_sample=False, eos_token_id=ids.eos_id,
                         pad_token_id=ids.eos_id)[0, inputs.shape[1]:].tolist()
    new = new[:new.index(ids.eos_id)] if ids.eos_id in new else new
    assert new, "a seed whose random model does not stop at once"
    rc = infer_cli.main([f"--gin.CHECKPOINT_PATH={hf}", "--prompt", prompt, "--gin.MAX_NEW_TOKENS=5", "--jsonl"])
    out = capsys.readouterr().out
    assert rc == 0
    [line] = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    assert line["generation"] == tok.decode(new, skip_special_tokens=True)

    rc = eval_cli.main(["--gin_file=gin/runs/eval.gin", f"--gin.CHECKPOINT_PATH={hf}",
                        f"--gin.EVAL_OUTPUT_DIR={tmp_path / 'eval'}", "--gin.MAX_EXAMPLES=1", "--gin.MAX_NEW_TOKENS=2"])
    assert rc == 0, capsys.readouterr().err
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert results


def test_opt_iml_bench_registers_in_the_checkpoint_s_tokenizer(tmp_path, family_tokenizers):
    """No TOKENIZER_DIR / OPT_TOKENIZER_DIR bound: OPT-IML Bench is tokenized with INITIAL_CHECKPOINT_PATH's tokenizer
    (before, it refused to register without a bench tokenizer)."""
    import gin

    from optiml_jax.cli import gin_setup
    from optiml_jax.data.task_cache import task_tokens
    from optiml_jax.tasks import registry
    from optiml_jax.testing.source_files import write_niv2_task

    hf = _config_only_dir(tmp_path / "hf", "llama3", family_tokenizers["llama3"])
    niv2 = tmp_path / "tasks"
    for stem in ("task001_quoref_question_generation", "task1152_bard_analogical_reasoning_causation"):
        write_niv2_task(niv2, stem, n=6)
    args, bindings = train_cli.parse_args([
        "--gin_file=runs/finetune.gin", "--gin_file=bench/train_opt_iml_bench.gin", f"--gin.NIV2_DATA_DIR={niv2}",
        f"--gin.INITIAL_CHECKPOINT_PATH={hf}", f"--gin.MODEL_DIR={tmp_path / 'run'}"])
    try:
        gin_setup.setup(args, bindings, command="train")
        gin_setup.check_training_data()
    finally:
        gin.clear_config()
    vocab = registry.get_task("niv2_task001_quoref_question_generation").vocabulary
    assert isinstance(vocab, HFTokenizerVocabulary) and vocab.path == hf.resolve()
    ids, _ = task_tokens("niv2_task001_quoref_question_generation", "train").example(0)
    assert ids[-1] == vocab.tokenizer.token_to_id("<|end_of_text|>")


def test_a_run_dir_s_copy_of_a_tokenizer_is_the_same_vocabulary(tmp_path, family_tokenizers):
    """A MODEL_DIR keeps its tokenizer's files: fine-tuning from it must not count its copy of the mini-benchmark's
    BPE as another tokenizer (a user's task in that BPE trains on), while a Llama-shaped tokenizer is another."""
    from optiml_jax.data.mixture_names import run_tokenizer, same_vocabulary

    run = tmp_path / "run"
    (run / "checkpoints" / "4").mkdir(parents=True)
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(mini_bench.VOCABULARY.path / name, run / name)
    for path in (run, run / "checkpoints" / "4"):  # the run dir, or one of its step dirs
        found = run_tokenizer(None, path)
        assert found.directory == str(run.resolve()) and "INITIAL_CHECKPOINT_PATH" in found.source
        assert same_vocabulary(found.vocabulary, mini_bench.VOCABULARY)
    assert not same_vocabulary(HFTokenizerVocabulary(family_tokenizers["llama3"]), mini_bench.VOCABULARY)
    assert run_tokenizer(None, tmp_path / "nothing_here") is None and run_tokenizer(None, None) is None
    assert run_tokenizer(family_tokenizers["qwen2"], run).source.startswith("TOKENIZER_DIR = ")  # TOKENIZER_DIR wins
