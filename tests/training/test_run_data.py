"""The run you launch is the run you get (#21): MIXTURE_OR_TASK_NAME decides the data for every run file, errors name
what is actually wrong, and the run writes down what it read.

Each case runs the command's own `main` with the arguments a user types (sizes swapped for tiny ones). The
configuration errors happen before any device work: MODEL_DIR must not exist afterwards.
"""

from __future__ import annotations

import json
import math
import pathlib
import shutil

import gin
import pytest

from optiml_jax.testing.source_files import MINI_TOKENIZER, write_niv2_task

TINY_MINI = ["--gin_file=gin/models/opt_tiny_mini_bench.gin"]
SMALL = ["--gin.TRAIN_STEPS=2", "--gin.BATCH_SIZE=8", "--gin.TASK_FEATURE_LENGTHS={'targets': 128}", "--no_progress"]


@pytest.fixture(autouse=True)
def _clean_gin_and_scratch_tasks():
    """The OPT-IML Bench these runs register over scratch directories (a truncated NIv2 file among them) is
    unregistered after each test: a later `tasks list` in the same worker would read it."""
    from optiml_jax.testing.instruction_tasks import tasks_registered_inside

    gin.clear_config()
    with tasks_registered_inside():
        yield
    gin.clear_config()


def _train(argv, capsys) -> tuple[int, str]:
    from optiml_jax.cli import train

    code = train.main(argv)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("run_file", ["gin/runs/train.gin", "gin/runs/finetune.gin"])
def test_a_generic_run_file_with_an_unknown_mixture_exits_2_naming_it_and_creates_nothing(run_file, tmp_path, capsys):
    # Before #21 both files trained on random tokens and exited 0, whatever the name.
    model_dir = tmp_path / "run"
    code, err = _train([f"--gin_file={run_file}", *TINY_MINI, f"--gin.MODEL_DIR={model_dir}",
                        "--gin.MIXTURE_OR_TASK_NAME=mini_bench_trian", "--gin.INITIAL_CHECKPOINT_PATH=None", *SMALL],
                       capsys)
    assert code == 2, err
    assert "MIXTURE_OR_TASK_NAME = 'mini_bench_trian' is not a registered task or mixture" in err
    assert "closest registered: mini_bench_train" in err
    assert not model_dir.exists()


def test_an_opt_iml_bench_name_without_the_bench_file_says_which_file_and_macros_to_add(tmp_path, capsys):
    import seqio

    seqio.MixtureRegistry.remove("opt_iml_bench_train")  # as in a fresh process (an earlier test may have registered it)
    model_dir = tmp_path / "run"
    code, err = _train(["--gin_file=gin/runs/quickstart.gin", f"--gin.MODEL_DIR={model_dir}",
                        "--gin.MIXTURE_OR_TASK_NAME=opt_iml_bench_train"], capsys)
    assert code == 2, err
    assert "is an OPT-IML Bench mixture" in err and "--gin_file=gin/bench/opt_iml_bench.gin" in err
    assert "NIV2_DATA_DIR" in err and not model_dir.exists()


def _bench_argv(niv2_dir, tokenizer_dir, model_dir) -> list[str]:
    return ["--gin_file=gin/runs/finetune.gin", *TINY_MINI, "--gin_file=gin/bench/train_opt_iml_bench.gin",
            f"--gin.NIV2_DATA_DIR={niv2_dir}", f"--gin.OPT_TOKENIZER_DIR={tokenizer_dir}",
            f"--gin.MODEL_DIR={model_dir}", "--gin.INITIAL_CHECKPOINT_PATH=None", *SMALL]


def test_a_truncated_niv2_task_file_is_named_never_blamed_on_the_mixture_name(tmp_path, capsys):
    niv2 = tmp_path / "niv2"
    write_niv2_task(niv2, "task001_quoref_question_generation", n=12)
    broken = write_niv2_task(niv2, "task002_quoref_answer_generation", n=12)  # a trainable task: the stream reads it
    broken.write_text(broken.read_text()[: len(broken.read_text()) // 2])
    model_dir = tmp_path / "run"
    code, err = _train(_bench_argv(niv2, MINI_TOKENIZER, model_dir), capsys)
    assert code == 2, err
    assert str(broken) in err and "not valid JSON" in err
    assert "not a registered task or mixture" not in err
    assert not model_dir.exists()


def test_a_truncated_tokenizer_file_is_named(tmp_path, capsys):
    niv2 = tmp_path / "niv2"
    write_niv2_task(niv2, "task001_quoref_question_generation", n=12)
    tok = tmp_path / "tokenizer"
    shutil.copytree(MINI_TOKENIZER, tok)
    vocab = tok / "vocab.json"
    vocab.write_text(vocab.read_text()[:200])
    code, err = _train(_bench_argv(niv2, tok, tmp_path / "run"), capsys)
    assert code == 2, err
    assert "vocab.json" in err and str(tok) in err and "not a registered" not in err


def test_the_bench_composed_after_the_quickstart_registers_on_demand_and_trains_on_it(tmp_path, capsys):
    # Before #21 this composition said "'opt_iml_bench_train' is not a registered task or mixture" with every file
    # intact: which stream factory a file bound decided whether the bench was registered.
    niv2 = tmp_path / "niv2"
    for stem in ("task001_quoref_question_generation", "task002_quoref_answer_generation"):
        write_niv2_task(niv2, stem, n=12)
    model_dir = tmp_path / "run"
    code, err = _train(["--gin_file=gin/runs/quickstart.gin", "--gin_file=gin/bench/train_opt_iml_bench.gin",
                        f"--gin.NIV2_DATA_DIR={niv2}", f"--gin.OPT_TOKENIZER_DIR={MINI_TOKENIZER}",
                        f"--gin.MODEL_DIR={model_dir}", "--gin.EvalCallback.suites=()", "--gin.EVAL_PERIOD=0",
                        "--gin.EvaluationConfig.eval_streams={}", "--gin.EvaluationConfig.eval_callback=None", *SMALL], capsys)
    assert code == 0, err
    record = json.loads((model_dir / "run.json").read_text())
    assert record["data"]["mixture_or_task_name"] == "opt_iml_bench_train"
    assert set(record["data"]["tasks_read"]) == {"niv2_task001_quoref_question_generation",
                                                 "niv2_task002_quoref_answer_generation"}
    # the run keeps the tokenizer it trained with: eval/infer of MODEL_DIR read it there, not a default
    from optiml_jax.data.task_cache import vocabulary_key
    from optiml_jax.evaluation.vocabulary import resolve_tokenizer

    assert (model_dir / "vocab.json").read_bytes() == (pathlib.Path(MINI_TOKENIZER) / "vocab.json").read_bytes()
    assert pathlib.Path(vocabulary_key(resolve_tokenizer(None, str(model_dir)))) == model_dir


def test_a_misspelled_task_feature_lengths_key_is_an_error_naming_it(tmp_path, capsys):
    model_dir = tmp_path / "run"
    code, err = _train(["--gin_file=gin/runs/train.gin", *TINY_MINI, f"--gin.MODEL_DIR={model_dir}",
                        "--gin.MIXTURE_OR_TASK_NAME=mini_bench_train", "--gin.TRAIN_STEPS=2", "--gin.BATCH_SIZE=8",
                        "--gin.TASK_FEATURE_LENGTHS={'tragets': 128}", "--no_progress"], capsys)
    assert code == 2, err
    assert "TASK_FEATURE_LENGTHS" in err and "'tragets' is not a feature of 'mini_bench_train'" in err
    assert "targets" in err and not model_dir.exists()


def test_the_synthetic_smoke_stream_refuses_a_real_mixture_name(tmp_path, capsys):
    code, err = _train(["--gin_file=gin/runs/smoke_synthetic.gin", f"--gin.MODEL_DIR={tmp_path / 'run'}",
                        "--gin.MIXTURE_OR_TASK_NAME=mini_bench_train"], capsys)
    assert code == 2, err
    assert "trains on random tokens" in err and "'mini_bench_train'" in err


def test_the_synthetic_smoke_run_says_so_in_its_first_data_line_and_in_run_json(tmp_path, capsys, caplog):
    model_dir = tmp_path / "run"
    with caplog.at_level("INFO"):
        code, err = _train(["--gin_file=gin/runs/smoke_synthetic.gin", f"--gin.MODEL_DIR={model_dir}",
                            "--gin.TRAIN_STEPS=2", "--gin.CHECKPOINT_PERIOD=2", "--no_progress"], capsys)
    assert code == 0, err
    assert any(r.getMessage().startswith("SYNTHETIC DATA: this run trains on random tokens") for r in caplog.records)
    assert json.loads((model_dir / "run.json").read_text())["data"]["source"] == "synthetic"


def test_a_macro_of_another_command_is_an_error_naming_that_command(tmp_path, capsys):
    code, err = _train(["--gin_file=gin/runs/smoke_synthetic.gin", f"--gin.MODEL_DIR={tmp_path / 'run'}",
                        f"--gin.EVAL_OUTPUT_DIR={tmp_path / 'eval'}"], capsys)
    assert code == 2, err
    assert "EVAL_OUTPUT_DIR" in err and "python -m optiml_jax.eval" in err
    assert not (tmp_path / "run").exists()


def _eval(argv, capsys) -> tuple[int, str]:
    from optiml_jax.cli import eval as eval_cli

    code = eval_cli.main(argv)
    return code, capsys.readouterr().err


def test_eval_takes_train_s_macro_for_seqio_caches_and_names_the_old_one(tmp_path, capsys):
    base = ["--gin.CHECKPOINT_PATH=/nonexistent/ckpt", f"--gin.EVAL_OUTPUT_DIR={tmp_path / 'eval'}"]
    code, err = _eval(base + ["--gin.USE_CACHED=True"], capsys)
    assert code == 2 and "USE_CACHED (set on the command line) was renamed USE_CACHED_TASKS" in err, err
    # the new name is read (the run gets as far as the checkpoint, which does not exist)
    code, err = _eval(base + ["--gin.USE_CACHED_TASKS=False", "--gin.MIXTURE_OR_TASK_NAME=mini_bench_flan_add"], capsys)
    assert code in (2, 5) and "/nonexistent/ckpt" in err and "USE_CACHED" not in err, err


@pytest.mark.parametrize("old, new, value", [("BENCHMARKS", "SUITES", "['mini_bench']"),
                                             ("TOKENIZER_PATH", "TOKENIZER_DIR", "'/tok'")])
def test_eval_s_renamed_macros_name_the_new_one(tmp_path, capsys, old, new, value):
    """One word per concept (#25): the suites are SUITES, a tokenizer is a TOKENIZER_DIR in every command."""
    base = ["--gin.CHECKPOINT_PATH=/nonexistent/ckpt", f"--gin.EVAL_OUTPUT_DIR={tmp_path / 'eval'}"]
    code, err = _eval(base + [f"--gin.{old}={value}"], capsys)
    assert code == 2 and f"{old} (set on the command line) was renamed {new}" in err, err
    code, err = _eval(base + [f"--gin.{new}={value}"], capsys)  # the new name is read: it gets to the checkpoint
    assert code in (2, 5) and "renamed" not in err and ("/nonexistent/ckpt" in err or "/tok" in err), err


def test_eval_accepts_the_launcher_flags_train_accepts(tmp_path, capsys):
    # --alsologtostderr (every T5X launcher passes it) and a one-process --coordinator_address setup; before #21 eval
    # printed argparse's usage for both.
    code, err = _eval(["--alsologtostderr", "--coordinator_address=127.0.0.1:0", "--num_processes=1",
                       "--process_id=0", "--gin.USE_CACHED=True", "--gin.CHECKPOINT_PATH=/x",
                       f"--gin.EVAL_OUTPUT_DIR={tmp_path}"], capsys)
    assert code == 2 and "usage:" not in err and "renamed USE_CACHED_TASKS" in err, err


def test_eval_shots_for_suites_that_do_not_run_is_an_error(tmp_path, capsys):
    code, err = _eval(["--gin.CHECKPOINT_PATH=/x", f"--gin.EVAL_OUTPUT_DIR={tmp_path}",
                       "--gin.MIXTURE_OR_TASK_NAME=mini_bench_flan_add", "--gin.SHOTS=(0, 2)"], capsys)
    assert code == 2 and "SHOTS set, but no evaluation suite runs" in err and "SEQIO_SHOTS" in err, err


def test_infer_reads_backslash_n_in_a_prompt_as_a_newline():
    from optiml_jax.cli.infer import unescape_prompt

    assert unescape_prompt(r"Reverse: abc\nAnswer:") == "Reverse: abc\nAnswer:"
    assert unescape_prompt(r"a\\nb") == "a\\nb"  # an escaped backslash stays one backslash before the n
    assert unescape_prompt(r"C:\temp") == r"C:\temp"


@pytest.mark.slow
def test_the_generic_run_file_trains_on_the_named_mixture_and_writes_down_what_it_read(tmp_path, capsys):
    """train.gin + a tiny model + the mini-benchmark: the loss falls far below ln(vocab) (random tokens could not do
    that: they are what the run trained on before #21), and run.json's counts equal the task's own dataset."""
    import seqio

    model_dir = tmp_path / "run"
    code, err = _train(["--gin_file=gin/runs/train.gin", *TINY_MINI, f"--gin.MODEL_DIR={model_dir}",
                        "--gin.MIXTURE_OR_TASK_NAME=mini_bench_train", "--gin.TASK_FEATURE_LENGTHS={'targets': 256}",
                        "--gin.TRAIN_STEPS=40", "--gin.BATCH_SIZE=8", "--gin.LEARNING_RATE=3e-3",
                        "--gin.WARMUP_STEPS=4", "--gin.DROPOUT_RATE=0.0", "--gin.COMPUTE_DTYPE='float32'",
                        "--gin.LOG_PERIOD=5", "--no_progress"], capsys)
    assert code == 0, err
    losses = [json.loads(x)["loss"] for x in (model_dir / "metrics" / "train.jsonl").read_text().splitlines()]
    assert losses[-1] < 0.7 * math.log(2048), losses  # 4.59 measured at step 40
    data = json.loads((model_dir / "run.json").read_text())["data"]
    assert data["mixture_or_task_name"] == "mini_bench_train" and data["seed"] == 0
    assert pathlib.Path(data["tokenizer"]) == pathlib.Path(MINI_TOKENIZER)
    assert 20 < len(data["tasks_read"]) <= data["num_tasks"]  # tasks are read when first drawn
    name = min(data["tasks_read"], key=lambda t: data["tasks_read"][t]["examples"])  # one small task, to read again
    ds = seqio.get_mixture_or_task(name).get_dataset(sequence_length=None, split="train", shuffle=False)
    examples = list(ds.as_numpy_iterator())
    tokens = sum(len(ex.get("inputs", [])) + len(ex["targets"]) for ex in examples)
    # examples: the task's; tokens: those tokenized so far (a task is tokenized as its examples are drawn, #23)
    assert data["tasks_read"][name]["examples"] == len(examples)
    assert 0 < data["tasks_read"][name]["tokens"] <= tokens


def test_eval_use_cached_tasks_without_a_cache_is_one_line_naming_the_task(tmp_path, capsys):
    # seqio only asserts deep in the read: this was exit 1, "internal error"
    code, err = _eval(["--gin.CHECKPOINT_PATH=/x", f"--gin.EVAL_OUTPUT_DIR={tmp_path}",
                       "--gin.MIXTURE_OR_TASK_NAME=mini_bench_flan_add", "--gin.USE_CACHED_TASKS=True"], capsys)
    assert code == 2, err
    assert "USE_CACHED_TASKS = True, but no seqio cache of mini_bench_flan_add" in err
    assert "--seqio_additional_cache_dirs" in err and "internal error" not in err


def test_a_malformed_binding_is_exit_2_naming_its_macro(tmp_path, capsys):
    code, err = _eval(["--gin.CHECKPOINT_PATH=/x", f"--gin.EVAL_OUTPUT_DIR={tmp_path}", "--gin.SHOTS=(0, 5"], capsys)
    assert code == 2 and "the binding of SHOTS is not valid gin" in err and "internal error" not in err, err


def test_a_flag_of_another_command_is_one_line_naming_that_command(tmp_path, capsys):
    # before: argparse's 13-line usage screen, naming neither the flag's command nor what to do
    code, err = _eval(["--no_progress", "--gin.CHECKPOINT_PATH=/x", f"--gin.EVAL_OUTPUT_DIR={tmp_path}"], capsys)
    assert code == 2 and "--no_progress is a flag of `python -m optiml_jax.train`" in err and "usage:" not in err, err
    code, err = _train(["--gin_file=gin/runs/smoke_synthetic.gin", "--prompt", "hi"], capsys)
    assert code == 2 and "--prompt is a flag of `python -m optiml_jax.infer`" in err and "'hi'" not in err, err


def test_a_checkpoint_without_its_tokenizer_is_not_given_the_mini_benchmark_s(tmp_path, capsys):
    """The mini-benchmark tokenizer is the default only for a model of its size: a 50272-id OPT without a tokenizer
    beside it is exit 2 asking for TOKENIZER_DIR (before: read with the mini-benchmark's 2048 ids, silently)."""
    import jax

    from optiml_jax.checkpoints import save_hf_opt
    from optiml_jax.cli import infer
    from optiml_jax.models import OPTConfig, init_params

    config = OPTConfig.preset("tiny", dropout_rate=0.0)
    save_hf_opt(config, init_params(config, jax.random.key(0)), tmp_path / "hf")
    code = infer.main([f"--gin.CHECKPOINT_PATH={tmp_path / 'hf'}", "--prompt", "hi", "--gin.MAX_NEW_TOKENS=1"])
    err = capsys.readouterr().err
    assert code == 2 and "set TOKENIZER_DIR" in err and "vocab_size 50272" in err, err
