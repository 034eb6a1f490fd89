"""Exact resume: SIGKILL a real training process mid-run, rerun the same command, compare every loss. The killed
run leaves its run lock behind (taken over as stale) and metrics past its last checkpoint (cut back on restart:
one record per step in train.jsonl and in the TensorBoard events)."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
STEPS = 24


def _command(model_dir, gin_file="gin/runs/quickstart.gin"):
    return [sys.executable, "-m", "optiml_jax.train", f"--gin_file={gin_file}", "--no_progress",
            f"--gin.MODEL_DIR={model_dir}", f"--gin.TRAIN_STEPS={STEPS}", "--gin.CHECKPOINT_PERIOD=4",
            "--gin.LOG_PERIOD=1", "--gin.BATCH_SIZE=4", "--gin.TASK_FEATURE_LENGTHS={'targets': 32}",
            "--gin.DROPOUT_RATE=0.1", "--gin.WARMUP_STEPS=3", "--gin.EvaluationConfig.eval_streams={}",
            "--gin.EvaluationConfig.eval_callback=None"]


def _env():
    env = dict(os.environ)
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"  # 2-way data parallel, sharded checkpoints
    env["JAX_PLATFORMS"] = "cpu"
    return env


def _losses(model_dir) -> dict[int, list[float]]:
    """step -> every loss logged for it (one per step: a resumed run cuts what it logs again)."""
    out: dict[int, list[float]] = {}
    path = pathlib.Path(model_dir) / "metrics" / "train.jsonl"
    for line in path.read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            out.setdefault(rec["step"], []).append(rec["loss"])
    return out


@pytest.mark.parametrize("gin_file", ["gin/runs/quickstart.gin", "gin/runs/quickstart_llama.gin"],
                         ids=["opt", "llama"])
def test_sigkill_then_rerun_reproduces_every_loss(tmp_path, gin_file):
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    ref = subprocess.Popen(_command(ref_dir, gin_file), cwd=REPO, env=_env(), stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
    victim = subprocess.Popen(_command(run_dir, gin_file), cwd=REPO, env=_env(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    jsonl = run_dir / "metrics" / "train.jsonl"
    killed_after = None
    deadline = time.time() + 240
    while time.time() < deadline and victim.poll() is None:
        if jsonl.is_file():
            steps = [json.loads(x)["step"] for x in jsonl.read_text().splitlines() if x.strip()]
            if steps and max(steps) >= 9:
                victim.send_signal(signal.SIGKILL)
                killed_after = max(steps)
                break
        time.sleep(0.01)
    victim.wait(timeout=60)
    assert killed_after is not None, "the run finished or stalled before it could be killed"
    assert victim.returncode == -signal.SIGKILL
    assert not (run_dir / "checkpoints" / str(STEPS)).exists()
    assert (run_dir / "run.lock").exists()  # left behind by the killed process
    before_restart = _losses(run_dir)

    _, err = ref.communicate(timeout=300)
    assert ref.returncode == 0, err[-3000:]
    resumed = subprocess.run(_command(run_dir, gin_file), cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "restored" in resumed.stderr and "took over the stale run lock" in resumed.stderr
    assert not (run_dir / "run.lock").exists()

    ref_losses, run_losses = _losses(ref_dir), _losses(run_dir)
    assert sorted(ref_losses) == sorted(run_losses) == list(range(STEPS))
    assert all(len(v) == 1 for v in run_losses.values()), "a step is logged twice after the restart"
    assert max(before_restart) >= 9  # the killed run had logged steps past its last checkpoint (8)
    for step, values in run_losses.items():
        for v in values:  # bitwise: before the kill and after the restore alike
            assert v == ref_losses[step][0], (step, v, ref_losses[step][0])
    for step, values in before_restart.items():  # what the killed run logged equals the reference too
        assert values[0] == ref_losses[step][0], step
    from optiml_jax.training.metrics import read_scalar_events

    tb = sorted(s for s, tag, _ in read_scalar_events(run_dir / "metrics" / "tensorboard" / "train") if tag == "loss")
    assert tb == list(range(STEPS))
    assert ref_losses[STEPS - 1][0] < ref_losses[0][0]
    family = json.loads((run_dir / "model_config.json").read_text()).get("family", "opt")
    assert family == ("llama" if "llama" in gin_file else "opt")


@pytest.mark.slow
def test_sigkill_during_an_async_save_resumes_bitwise(tmp_path):
    """The kill lands while Orbax writes a checkpoint in the background (its tmp dir exists, not yet renamed): the
    half-written step is ignored, the rerun resumes from the newest finalized one and every loss equals the
    uninterrupted run's."""
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    ref = subprocess.Popen(_command(ref_dir), cwd=REPO, env=_env(), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    victim = subprocess.Popen(_command(run_dir), cwd=REPO, env=_env(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    ckpts = run_dir / "checkpoints"
    caught = None
    deadline = time.time() + 600
    try:
        while time.time() < deadline and victim.poll() is None:
            if ckpts.is_dir():
                saving = [p.name for p in ckpts.iterdir() if "tmp" in p.name and p.name.split(".")[0].isdigit()
                          and int(p.name.split(".")[0]) >= 8]
                if saving:
                    victim.send_signal(signal.SIGKILL)
                    caught = saving[0]
                    break
            time.sleep(0.001)
        victim.wait(timeout=60)
    finally:
        if victim.poll() is None:
            victim.kill()
    assert caught is not None, "no save in progress was caught before the run ended"
    assert victim.returncode == -signal.SIGKILL
    in_flight = int(caught.split(".")[0])
    assert not (ckpts / str(in_flight)).exists()  # never finalized

    assert ref.wait(timeout=600) == 0
    resumed = subprocess.run(_command(run_dir), cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"restored {ckpts} step {in_flight - 4}" in resumed.stderr  # the newest finalized one
    ref_losses, run_losses = _losses(ref_dir), _losses(run_dir)
    assert sorted(run_losses) == list(range(STEPS)) and all(len(v) == 1 for v in run_losses.values())
    assert run_losses == ref_losses  # bitwise
