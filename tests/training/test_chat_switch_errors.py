"""USE_CHAT_TEMPLATE's errors (issue 22, chat templates): the switch on with a tokenizer that has no chat template
(OPT's BPE, the mini-benchmark's) exits 2 with one line naming the tokenizer directory and the macro, before any
run dir is made or weights load; the switch set for a command that does not read it, or for the SeqIO evaluation it
does not apply to, is an error too."""

import os
import pathlib
import subprocess
import sys

import gin
import pytest

from optiml_jax.cli import gin_setup

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _clean_gin():
    yield
    gin.clear_config()


def _cli(args, timeout=300):
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1",
               PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _error_line(out) -> str:
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    [line] = [x for x in out.stderr.splitlines() if x.startswith("error:")]
    return line


@pytest.mark.parametrize("command", ["tasks", "plan"])
def test_the_switch_set_for_a_command_that_does_not_read_it_is_an_error(command):
    with pytest.raises(gin_setup.GinConfigError, match=rf"USE_CHAT_TEMPLATE \(set on the command line\) is not read by "
                                                       rf"`python -m optiml_jax.{command}`; it is read by"):
        gin_setup.parse_gin([], ["USE_CHAT_TEMPLATE = True"], command=command)


@pytest.mark.slow  # a CLI process (~40 s on 2 busy cores)
def test_train_with_a_tokenizer_without_a_chat_template_exits_2_naming_it_and_the_macro(tmp_path):
    from optiml_jax.tasks.mini_bench.tokenizer import TOKENIZER_DIR

    run = tmp_path / "run"
    line = _error_line(_cli(["optiml_jax.train", "--gin_file=gin/runs/quickstart.gin", f"--gin.MODEL_DIR={run}",
                             "--gin.USE_CHAT_TEMPLATE=True", "--no_progress"]))
    assert "USE_CHAT_TEMPLATE = True" in line and str(TOKENIZER_DIR) in line and "has no chat template" in line
    assert not run.exists()


def test_infer_refuses_a_tokenizer_without_a_chat_template_before_loading_weights(tmp_path):
    from optiml_jax.evaluation.entry_points import infer
    from optiml_jax.tasks.mini_bench.tokenizer import TOKENIZER_DIR
    from optiml_jax.vocabularies.chat_template import ChatTemplateError

    # no checkpoint there at all: the tokenizer is checked first (the mini-benchmark's, the fallback)
    with pytest.raises(ChatTemplateError, match=f"USE_CHAT_TEMPLATE = True, but the tokenizer {TOKENIZER_DIR}"):
        infer(str(tmp_path / "none"), ["hi"], use_chat_template=True)


@pytest.mark.slow  # a CLI process
def test_eval_refuses_the_switch_for_a_k_shot_seqio_evaluation(tmp_path):
    line = _error_line(_cli(["optiml_jax.eval", f"--gin.CHECKPOINT_PATH={tmp_path / 'none'}",
                             f"--gin.EVAL_OUTPUT_DIR={tmp_path / 'out'}", "--gin.USE_CHAT_TEMPLATE=True",
                             "--gin.MIXTURE_OR_TASK_MODULE=tasks.example_seqio_tasks",
                             "--gin.MIXTURE_OR_TASK_NAME=example_alphabet_order", "--gin.SEQIO_SHOTS=(0, 5)"]))
    assert "USE_CHAT_TEMPLATE = True takes the SeqIO evaluation zero-shot only" in line and "SEQIO_SHOTS" in line


def test_seqio_eval_callback_refuses_the_switch_k_shot():
    from optiml_jax.evaluation.hooks import SeqioEvalCallback
    from optiml_jax.evaluation.seqio_eval import EvalConfigError

    with pytest.raises(EvalConfigError, match="zero-shot only, not shots = 5"):
        SeqioEvalCallback("any_task", shots=5, use_chat_template=True)
