"""Two processes over loopback (jax.distributed + gloo) train together, each feeding its own data shard;
losses equal a single-process run over the same global batches (same 4-device mesh)."""

import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cmd(model_dir, extra=()):
    return [sys.executable, "-m", "optiml_jax.train", "--gin_file=gin/runs/smoke_synthetic.gin", "--no_progress",
            f"--gin.MODEL_DIR={model_dir}", "--gin.TRAIN_STEPS=4", "--gin.CHECKPOINT_PERIOD=2", "--gin.LOG_PERIOD=1",
            "--gin.BATCH_SIZE=8", "--gin.TASK_FEATURE_LENGTHS={'targets': 32}", "--gin.DROPOUT_RATE=0.1",
            "--gin.WARMUP_STEPS=1", "--gin.EvaluationConfig.eval_streams={}", *extra]


def _env(devices):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return env


def _losses(model_dir):
    lines = (pathlib.Path(model_dir) / "metrics" / "train.jsonl").read_text().splitlines()
    return [json.loads(x)["loss"] for x in lines]


@pytest.mark.slow
def test_two_processes_match_single_process(tmp_path):
    port = _free_port()
    mp_dir = tmp_path / "mp"
    procs = [subprocess.Popen(_cmd(mp_dir, [f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
                                            f"--process_id={i}", "--cpu_collectives=gloo"]),
                              cwd=REPO, env=_env(2), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    single = subprocess.run(_cmd(tmp_path / "single"), cwd=REPO, env=_env(4), capture_output=True, text=True,
                            timeout=600)
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    assert single.returncode == 0, single.stderr[-3000:]
    assert "data shard 0 of 2" in outs[0][1] and "data shard 1 of 2" in outs[1][1]
    mp, ref = _losses(mp_dir), _losses(tmp_path / "single")
    assert len(mp) == len(ref) == 4
    np.testing.assert_allclose(mp, ref, rtol=1e-6)
    assert sorted(int(p.name) for p in (mp_dir / "checkpoints").iterdir() if p.name.isdigit()) == [2, 4]


def _mini_bench_cmd(model_dir, steps, extra=()):
    return [sys.executable, "-m", "optiml_jax.train", "--gin_file=gin/runs/quickstart.gin", "--no_progress",
            f"--gin.MODEL_DIR={model_dir}", f"--gin.TRAIN_STEPS={steps}", "--gin.CHECKPOINT_PERIOD=4",
            "--gin.LOG_PERIOD=1", "--gin.BATCH_SIZE=4", "--gin.TASK_FEATURE_LENGTHS={'targets': 64}",
            "--gin.DROPOUT_RATE=0.1", "--gin.WARMUP_STEPS=2", "--gin.LR_DECAY='constant'",
            "--gin.EvaluationConfig.eval_streams={}", "--gin.EvaluationConfig.eval_callback=None", *extra]


@pytest.mark.slow
def test_resume_on_another_number_of_processes_continues_the_same_run(tmp_path):
    """Real mini-bench stream: 2 processes train steps 1-4 and checkpoint; one process resumes to step 8.
    Every loss equals an uninterrupted single-process run: the global batch of a step does not depend on how
    many hosts read it, and the checkpoint restores onto the new layout."""
    port = _free_port()
    run = tmp_path / "run"
    procs = [subprocess.Popen(_mini_bench_cmd(run, 4, [f"--coordinator_address=127.0.0.1:{port}",
                                                       "--num_processes=2", f"--process_id={i}",
                                                       "--cpu_collectives=gloo"]),
                              cwd=REPO, env=_env(2), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    resumed = subprocess.run(_mini_bench_cmd(run, 8), cwd=REPO, env=_env(4), capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    single = subprocess.run(_mini_bench_cmd(tmp_path / "single", 8), cwd=REPO, env=_env(4), capture_output=True,
                            text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    got, want = _losses(run), _losses(tmp_path / "single")
    assert len(got) == len(want) == 8
    np.testing.assert_allclose(got, want, rtol=2e-5)


@pytest.mark.slow
def test_eval_callback_runs_on_two_processes_and_matches_one(tmp_path):
    """The trainer's evaluation callback (rank classification + generation on the mini-benchmark) runs SPMD on a
    2-process mesh; process 0 writes results.json, with the same scores as a single-process run."""
    port = _free_port()
    small_eval = ["--gin.EvaluationConfig.eval_callback=@EvalCallback()", "--gin.EvalCallback.max_examples=2",
                  "--gin.EvalCallback.shots=(0,)", "--gin.EvalCallback.max_new_tokens=4"]
    mp_dir, single_dir = tmp_path / "mp", tmp_path / "single"
    cmd = lambda d, extra=(): [a for a in _mini_bench_cmd(d, 2, [*small_eval, *extra])  # noqa: E731
                               if a != "--gin.EvaluationConfig.eval_callback=None"]
    procs = [subprocess.Popen(cmd(mp_dir, [f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
                                           f"--process_id={i}", "--cpu_collectives=gloo"]),
                              cwd=REPO, env=_env(2), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    outs = [p.communicate(timeout=900) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    single = subprocess.run(cmd(single_dir), cwd=REPO, env=_env(4), capture_output=True, text=True, timeout=900)
    assert single.returncode == 0, single.stderr[-3000:]
    for step in (0, 2):
        got = json.loads((mp_dir / "eval" / f"step_{step}" / "results.json").read_text())
        want = json.loads((single_dir / "eval" / f"step_{step}" / "results.json").read_text())
        key = lambda r: (r["task"], r["template"], r["shots"], r["metric"])  # noqa: E731
        got_scores = {key(r): r["score"] for r in got["scores"]}
        want_scores = {key(r): r["score"] for r in want["scores"]}
        assert got_scores.keys() == want_scores.keys() and len(got_scores) > 10
        for k in want_scores:
            assert got_scores[k] == pytest.approx(want_scores[k], abs=1e-3), k
    assert "Evaluation at step 2" in outs[0][0] and "Evaluation at step 2" not in outs[1][0]


def _two_processes(model_dir, steps, port, stderr=subprocess.PIPE):
    cmd = lambda i: [a if not a.startswith("--gin.TRAIN_STEPS=") else f"--gin.TRAIN_STEPS={steps}"  # noqa: E731
                     for a in _cmd(model_dir, [f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
                                               f"--process_id={i}", "--cpu_collectives=gloo",
                                               "--gin.CHECKPOINT_PERIOD=3"])]
    return [subprocess.Popen(cmd(i), cwd=REPO, env=_env(2), stdout=subprocess.DEVNULL, stderr=stderr, text=True)
            for i in range(2)]


@pytest.mark.slow  # three 2-process runs, ~2-4 min on a loaded 2-core host
def test_sigkill_during_a_two_process_background_save_resumes_bitwise(tmp_path):
    """Both processes save on their background threads (Orbax's barriers through the coordination service, the
    checksums summed through its key-value store). SIGKILL both while a save is being written (its tmp dir is
    there, not yet renamed): the rerun resumes from the newest finalized step, and every loss equals an
    uninterrupted 2-process run's, bitwise."""
    import signal
    import time

    steps = 18
    ref = _two_processes(tmp_path / "ref", steps, _free_port())
    run = tmp_path / "run"
    victims = _two_processes(run, steps, _free_port(), stderr=subprocess.DEVNULL)
    ckpts, caught = run / "checkpoints", None
    deadline = time.time() + 600
    try:
        while time.time() < deadline and all(v.poll() is None for v in victims):
            if ckpts.is_dir():
                saving = [p.name for p in ckpts.iterdir() if "tmp" in p.name and p.name.split(".")[0].isdigit()
                          and int(p.name.split(".")[0]) >= 6]
                if saving:
                    for v in victims:
                        v.send_signal(signal.SIGKILL)
                    caught = int(saving[0].split(".")[0])
                    break
            time.sleep(0.001)
    finally:
        for v in victims:
            if v.poll() is None and caught is None:
                v.kill()
            v.wait(timeout=60)
    assert caught is not None, "no save in progress was caught before the run ended"
    assert all(v.returncode == -signal.SIGKILL for v in victims)
    assert not (ckpts / str(caught)).exists()  # never finalized
    outs = [p.communicate(timeout=600) for p in ref]
    for p, (_, err) in zip(ref, outs):
        assert p.returncode == 0, err[-3000:]
    resumed = _two_processes(run, steps, _free_port())
    outs = [p.communicate(timeout=600) for p in resumed]
    for p, (_, err) in zip(resumed, outs):
        assert p.returncode == 0, err[-3000:]
    assert f"restored {ckpts} step {caught - 3}" in outs[0][1]  # the newest finalized one
    got, want = _losses(run), _losses(tmp_path / "ref")
    # the killed run logged steps past its last checkpoint; the rerun cut them back: one record per step
    assert len(got) == len(want) == steps
    assert got == want  # bitwise
    assert sorted(int(p.name) for p in ckpts.iterdir() if p.name.isdigit()) == [12, 15, 18]
