"""The two-length mixture (issue 23: ~130- and ~10-token examples at 1:1, where a packer that drops what does not fit
trains on other shares) trains through the carry packer, and a run SIGKILLed mid-way and restarted reproduces every
loss of an uninterrupted run bitwise: the carried draws come back from the checkpoint's stream state."""

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from optiml_jax.checkpoints.training_runs import finalized_steps_on_disk

REPO = pathlib.Path(__file__).resolve().parents[2]
STEPS = 14
MODULE = "two_length_tasks_for_sigkill"


def _command(model_dir):
    return [sys.executable, "-m", "optiml_jax.train", "--gin_file=gin/runs/quickstart.gin", "--no_progress",
            f"--gin.MIXTURE_OR_TASK_MODULE={MODULE}", "--gin.MIXTURE_OR_TASK_NAME='two_length_mixture'",
            f"--gin.MODEL_DIR={model_dir}", f"--gin.TRAIN_STEPS={STEPS}", "--gin.CHECKPOINT_PERIOD=3",
            "--gin.LOG_PERIOD=1", "--gin.BATCH_SIZE=4", "--gin.TASK_FEATURE_LENGTHS={'inputs': 192, 'targets': 64}",
            "--gin.DROPOUT_RATE=0.1", "--gin.WARMUP_STEPS=3", "--gin.EvaluationConfig.eval_streams={}",
            "--gin.EvaluationConfig.eval_callback=None"]


def _losses(model_dir) -> dict[int, set[float]]:
    out: dict[int, set[float]] = {}
    for line in (pathlib.Path(model_dir) / "metrics" / "train.jsonl").read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            out.setdefault(rec["step"], set()).add(rec["loss"])
    return out


@pytest.mark.slow
def test_two_length_mixture_resumes_bitwise_after_sigkill(tmp_path):
    (tmp_path / f"{MODULE}.py").write_text(textwrap.dedent("""
        from optiml_jax.testing.length_mixtures import register_two_length_mixture

        register_two_length_mixture("two_length_mixture", "two_length_long", "two_length_short")
    """))
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
               XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    ref = subprocess.Popen(_command(ref_dir), cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           text=True)
    victim = subprocess.Popen(_command(run_dir), cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    jsonl, killed_after, deadline = run_dir / "metrics" / "train.jsonl", None, time.time() + 1200
    while time.time() < deadline and victim.poll() is None:
        if jsonl.is_file():
            steps = [json.loads(x)["step"] for x in jsonl.read_text().splitlines() if x.strip()]
            if steps and max(steps) >= 5 and finalized_steps_on_disk(run_dir):
                victim.send_signal(signal.SIGKILL)
                killed_after = max(steps)
                break
        time.sleep(0.01)
    if killed_after is None:
        victim.kill()
    victim.wait(timeout=120)
    assert killed_after is not None, "the run finished or stalled before step 5 and a finalized checkpoint"
    assert victim.returncode == -signal.SIGKILL
    _, err = ref.communicate(timeout=1500)
    assert ref.returncode == 0, err[-3000:]
    resumed = subprocess.run(_command(run_dir), cwd=REPO, env=env, capture_output=True, text=True, timeout=1500)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    restored = re.search(r"restored \S+ step (\d+)", resumed.stderr)
    assert restored and 3 <= int(restored[1]) <= killed_after, resumed.stderr[-3000:]
    assert "replayed from step 0" not in resumed.stderr  # the carried draws came from the checkpoint's state
    ref_losses, run_losses = _losses(ref_dir), _losses(run_dir)
    assert sorted(ref_losses) == sorted(run_losses) == list(range(STEPS))
    for step, values in run_losses.items():
        assert values == ref_losses[step], (step, values, ref_losses[step])  # bitwise, before and after the kill
