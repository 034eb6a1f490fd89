"""No configuration mistake trains silently: a macro no binding reads is an error with a suggestion (before any
device work), values are checked where they enter train() (naming the macro) and before MODEL_DIR is created,
and the commands print one line with a documented exit code."""

import logging
import os
import pathlib
import subprocess
import sys
import time

import gin
import pytest

from optiml_jax.testing.train_configs import train_configs
from optiml_jax.cli import gin_setup
from optiml_jax.training.errors import ConfigValueError
from optiml_jax.training.train_loop import train

REPO = pathlib.Path(__file__).resolve().parents[2]
SMOKE = ["runs/smoke_synthetic.gin"]


@pytest.fixture(autouse=True)
def _clean_gin():
    yield
    gin.clear_config()


@pytest.mark.parametrize("binding,expected", [
    ("LEARNIG_RATE = 0.1", "macro LEARNIG_RATE (set on the command line) is read by no binding; did you mean "
                           "LEARNING_RATE?"),
    ("TRAIN_STEPZ = 3", "macro TRAIN_STEPZ (set on the command line) is read by no binding; did you mean TRAIN_STEPS?"),
    ("EVAL_STEPS = 10", "EVAL_STEPS (set on the command line) is a T5X macro this project does not implement: set "
                        "EvaluationConfig.eval_batches"),
    ("RANDOM_SEED = 3", "RANDOM_SEED (set on the command line) is a T5X macro this project does not implement: set "
                        "SEED"),
])
def test_unread_macro_is_an_error_with_a_suggestion(binding, expected):
    with pytest.raises(gin_setup.GinConfigError) as e:
        gin_setup.parse_gin(SMOKE, [binding])
    assert expected in str(e.value)


def test_macros_read_by_some_binding_or_the_data_side_are_fine(tmp_path):
    f = tmp_path / "mine.gin"
    f.write_text("include 'runs/smoke_synthetic.gin'\nMY_SEED = 7\nSEED = %MY_SEED\nUSE_CACHED_TASKS = False\n"
                 "MIXTURE_OR_TASK_MODULE = 'json'\n")
    gin_setup.parse_gin([str(f)], ["TRAIN_STEPS = 3"])
    assert gin.query_parameter("TRAIN_STEPS/macro.value") == 3
    f.write_text("include 'runs/smoke_synthetic.gin'\nUNUSED_IN_FILE = 7\n")
    with pytest.raises(gin_setup.GinConfigError, match="macro UNUSED_IN_FILE .set in a gin file. is read by no binding"):
        gin_setup.parse_gin([str(f)])


@pytest.mark.parametrize("files", [["runs/quickstart.gin"], ["runs/smoke_synthetic.gin"], ["runs/eval.gin"],
                                   ["runs/infer.gin"], ["runs/finetune.gin", "models/opt_30b.gin"],
                                   ["runs/train.gin", "models/opt_125m.gin", "partitioning/fsdp_tensor.gin"],
                                   ["runs/quickstart.gin", "mixtures/optiml_final.gin"]])
def test_every_shipped_configuration_reads_all_its_macros(files):
    from optiml_jax.cli import eval as eval_cli
    from optiml_jax.cli import gin_internals

    eval_cli.register_configurables()
    required = {"MODEL_DIR": "'/x'", "MIXTURE_OR_TASK_NAME": "'m'", "TASK_FEATURE_LENGTHS": "{'targets': 8}",
                "TRAIN_STEPS": "1", "BATCH_SIZE": "1", "INITIAL_CHECKPOINT_PATH": "'/c'", "CHECKPOINT_PATH": "'/c'",
                "EVAL_OUTPUT_DIR": "'/o'"}
    gin.clear_config()
    paths = [str(p) for p in gin_setup.gin_search_paths()]
    gin_internals.prepend_search_paths(paths)
    gin.parse_config_files_and_bindings([gin_setup._resolve_gin_file(f, paths) for f in files], [],
                                        finalize_config=False)
    defined, _ = gin_setup.macro_usage()
    gin_setup.parse_gin(files, [f"{k} = {v}" for k, v in required.items() if k in defined])


def _cli(args, timeout=300, **env):
    e = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1",
             PYTHONPATH=str(REPO), **env)
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=e, capture_output=True, text=True,
                          timeout=timeout)


def _error_lines(stderr: str) -> list[str]:
    return [x for x in stderr.splitlines() if x.startswith("error:")]


def test_cli_typos_exit_2_with_one_line_and_create_nothing(tmp_path):
    run = tmp_path / "run"
    t0 = time.time()
    out = _cli(["optiml_jax.train", "--gin_file=gin/runs/smoke_synthetic.gin", f"--gin.MODEL_DIR={run}",
                "--gin.LEARNIG_RATE=0.1", "--gin.TRAIN_STEPZ=3"])
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    [line] = _error_lines(out.stderr)
    assert "LEARNIG_RATE" in line and "did you mean LEARNING_RATE?" in line and "did you mean TRAIN_STEPS?" in line
    assert not run.exists() and time.time() - t0 < 120
    verbose = _cli(["optiml_jax.train", "--gin_file=gin/runs/smoke_synthetic.gin", f"--gin.MODEL_DIR={run}",
                    "--gin.TRAIN_STEPZ=3", "--verbose"])
    assert verbose.returncode == 2 and "Traceback" in verbose.stderr and not run.exists()


def test_train_values_are_checked_where_they_enter(train_kwargs, make_part):
    run = pathlib.Path(train_kwargs["model_dir"])
    with pytest.raises(ConfigValueError, match=r"BATCH_SIZE \(DataConfig.batch_size\) = 'eight': must be an integer >= 1"):
        train(**train_configs(**{**train_kwargs, "batch_size": "eight"}))
    with pytest.raises(ConfigValueError, match=r"TASK_FEATURE_LENGTHS .* must be a mapping"):
        train(**train_configs(**{**train_kwargs, "task_feature_lengths": 32}))
    with pytest.raises(ConfigValueError, match=r"LEARNING_RATE \(OptimizerConfig.learning_rate\) = 'fast'"):
        train(**train_configs(**{**train_kwargs, "learning_rate": "fast"}))
    with pytest.raises(ConfigValueError) as e:
        train(**train_configs(**{**train_kwargs, "batch_size": 6, "partitioner": make_part((4, 2, 1), "fsdp")}))
    msg = str(e.value)
    assert "BATCH_SIZE = 6 cannot be split over the mesh" in msg and "MESH_SHAPE" in msg
    assert "data=4 x fsdp=2 = 8 shards" in msg and "multiple of 8" in msg
    assert not run.exists()


def test_unknown_mixture_is_one_line_with_the_closest_names_and_creates_nothing(train_kwargs):
    import optiml_jax.tasks.registrations  # noqa: F401  (registers mini_bench_*)
    from optiml_jax.data.stream import get_train_stream

    from optiml_jax.data.mixture_names import UnknownMixtureError

    run = pathlib.Path(train_kwargs["model_dir"])
    with pytest.raises(UnknownMixtureError) as e:
        train(**train_configs(**{**train_kwargs, "mixture_or_task_name": "mini_bench_trian", "stream_factory": get_train_stream}))
    msg = str(e.value).split("\n  In call to configurable")[0]  # gin appends where it was called from
    assert "\n" not in msg and "MIXTURE_OR_TASK_NAME = 'mini_bench_trian' is not a registered task or mixture" in msg
    assert "closest registered: mini_bench_train" in msg
    assert not run.exists()


def test_rows_too_short_for_any_example_are_an_error_and_create_nothing(train_kwargs, tiny_config):
    import optiml_jax.tasks.registrations  # noqa: F401
    from optiml_jax.data.stream import get_train_stream

    run = pathlib.Path(train_kwargs["model_dir"])
    with pytest.raises(ConfigValueError, match=r"TASK_FEATURE_LENGTHS = \{'targets': 4\} \(4-token rows\): every one "
                                               r"of the \d+ examples drawn for step 0 is longer than a row"):
        # a 5-task mixture of the mini-benchmark: the guardrail is the stream's, whatever the mixture's size
        train(**train_configs(**{**train_kwargs, "mixture_or_task_name": "mini_bench_eval_fully_supervised",
                 "stream_factory": get_train_stream, "task_feature_lengths": {"targets": 4},
                 "model_config": tiny_config(vocab_size=2048)}))  # the mini-benchmark's ids fit
    assert not run.exists()


@pytest.mark.slow
def test_rows_that_truncate_most_examples_warn(train_kwargs, tiny_config, caplog):
    import optiml_jax.tasks.registrations  # noqa: F401
    from optiml_jax.data.stream import get_train_stream

    with caplog.at_level(logging.WARNING):
        result = train(**train_configs(**{**train_kwargs, "mixture_or_task_name": "mini_bench_train", "train_steps": 1,
                          "stream_factory": get_train_stream, "task_feature_lengths": {"targets": 16},
                          "model_config": tiny_config(vocab_size=2048)}))
    [warning] = result.warnings
    assert "16-token rows" in warning and "are longer than a row and are cut from the left" in warning
    assert warning in caplog.text


def test_cli_unknown_mixture_exits_2_with_one_line(tmp_path):
    run = tmp_path / "run"
    out = _cli(["optiml_jax.train", "--gin_file=gin/runs/quickstart.gin", f"--gin.MODEL_DIR={run}",
                "--gin.MIXTURE_OR_TASK_NAME=mini_bench_trian", "--gin.EvaluationConfig.eval_callback=None", "--no_progress"])
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    [line] = _error_lines(out.stderr)
    assert "mini_bench_trian" in line and "closest registered: mini_bench_train" in line
    assert not run.exists()


@pytest.mark.parametrize("module", ["train", "eval", "infer", "convert", "tasks"])
def test_every_command_documents_its_exit_codes(module, capsys):
    import importlib

    main = importlib.import_module(f"optiml_jax.cli.{module}").main
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "exit codes:" in out and "2    usage or configuration error" in out and "--verbose" in out


def test_a_vocabulary_larger_than_the_model_is_an_error_and_creates_nothing(train_kwargs, tiny_config):
    import optiml_jax.tasks.registrations  # noqa: F401 (mini_bench_*: a 2048-id vocabulary)
    from optiml_jax.data.stream import get_train_stream

    run = pathlib.Path(train_kwargs["model_dir"])
    small = tiny_config(vocab_size=1024)
    with pytest.raises(ConfigValueError, match=r"MIXTURE_OR_TASK_NAME = 'mini_bench_eval_fully_supervised': its "
                                               r"tasks' vocabulary \(.*\) has 2048 ids but the model's vocab_size is "
                                               r"1024"):
        train(**train_configs(**{**train_kwargs, "mixture_or_task_name": "mini_bench_eval_fully_supervised", "model_config": small,
                 "stream_factory": get_train_stream}))
    assert not run.exists()


def test_the_model_config_carries_the_special_ids_of_the_run_s_vocabulary():
    """model_config.json, the in-training evaluation and export take the ids of the vocabulary the run trains in:
    they fill a config without ids (the 'tiny' presets have none) and replace a published preset's hub ids."""
    from types import SimpleNamespace

    from optiml_jax.training.model_config import llama_config, opt_config, with_vocabulary_ids
    from optiml_jax.vocabularies.special_ids import SpecialIds

    qwen_like = SimpleNamespace(special_ids=SpecialIds(bos=None, eos=(9, 11), pad=9, vocab_size=64, pad_from_eos=True))
    llama = with_vocabulary_ids(llama_config("tiny", vocab_size=64), qwen_like)
    assert (llama.bos_token_id, llama.eos_token_id, llama.pad_token_id) == (None, (9, 11), None)
    own_pad = SimpleNamespace(special_ids=SpecialIds(bos=5, eos=(6,), pad=7, vocab_size=64))
    opt = with_vocabulary_ids(opt_config("tiny", vocab_size=64), own_pad)
    assert (opt.bos_token_id, opt.eos_token_id, opt.pad_token_id) == (5, 6, 7)
    untouched = opt_config("tiny", vocab_size=64)
    assert with_vocabulary_ids(untouched, SimpleNamespace()) == untouched  # a stream without special_ids
    hub = with_vocabulary_ids(opt_config("125m", vocab_size=64), own_pad)  # OPT-125m's hub ids (2, 2, 1) replaced
    assert (hub.bos_token_id, hub.eos_token_id, hub.pad_token_id) == (5, 6, 7)
    no_pad = SimpleNamespace(special_ids=SpecialIds(bos=5, eos=(6,), pad=6, vocab_size=64, pad_from_eos=True))
    assert with_vocabulary_ids(opt_config("tiny", vocab_size=64), no_pad).pad_token_id is None
