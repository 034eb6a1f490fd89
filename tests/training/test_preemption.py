"""Preemption: SIGTERM / SIGINT / SIGUSR1 and MAX_RUNTIME end a run at one agreed step, saved, exit 143; rerunning
the same command finishes with exactly the losses of an uninterrupted run."""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from optiml_jax.testing.train_configs import train_configs
from optiml_jax.training.preemption import Preempted, parse_runtime
from optiml_jax.training.synthetic_data import synthetic_stream
from optiml_jax.training.train_loop import train
from optiml_jax.training.errors import ConfigValueError

REPO = pathlib.Path(__file__).resolve().parents[2]


def _steps_on_disk(model_dir):
    d = pathlib.Path(model_dir) / "checkpoints"
    return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.is_dir() else []


def _signalling_stream(signum, at_step):
    """The synthetic stream, which sends `signum` to this process while the batch of `at_step` is read (the
    trainer is then in the middle of that step)."""
    def factory(**kw):
        stream = synthetic_stream(**kw)
        get_batch = stream.get_batch

        def get(step):
            if step == at_step:
                os.kill(os.getpid(), signum)
            return get_batch(step)

        stream.get_batch = get
        return stream
    return factory


@pytest.mark.slow  # three short runs, 14 s
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1])
def test_signal_mid_run_saves_the_step_reached_and_the_rerun_matches(train_kwargs, tmp_path, signum):
    kw = {**train_kwargs, "train_steps": 6, "checkpoint_period": 100}
    ref = train(**train_configs(**{**kw, "model_dir": str(tmp_path / "ref")}))
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Preempted, match=rf"{signal.Signals(signum).name}: stopped after step 3 of 6 and saved "
                                        r"checkpoint 3 in .*; rerun the same command to resume") as e:
        train(**train_configs(**{**kw, "stream_factory": _signalling_stream(signum, 2)}))
    assert e.value.step == 3
    assert _steps_on_disk(kw["model_dir"]) == [3]  # no periodic checkpoint was due: the signal's save
    assert signal.getsignal(signal.SIGTERM) is before  # handlers restored after the run
    resumed = train(**train_configs(**kw))
    assert resumed.restored_from == 3
    got = [json.loads(x)["loss"] for x in (pathlib.Path(kw["model_dir"]) / "metrics" / "train.jsonl").read_text()
           .splitlines()]
    assert got == [r["loss"] for r in ref.history]  # bitwise, steps 0-5 once each


def test_watch_turns_a_signal_into_a_stop_and_restores_the_handlers():
    from optiml_jax.training.preemption import PreemptionWatch

    before = signal.getsignal(signal.SIGTERM)
    with PreemptionWatch() as watch:
        assert watch.stop_reason(0) is None
        os.kill(os.getpid(), signal.SIGTERM)  # would end pytest without the watch's handler
        assert watch.stop_reason(1) == "SIGTERM" and watch.stop_reason(2) == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is before
    with PreemptionWatch(max_runtime_s=1e9, margin_s=0) as watch:
        assert watch.stop_reason(0) is None
    with PreemptionWatch(max_runtime_s=1e9, margin_s=1e9) as watch:
        assert watch.stop_reason(0) == "MAX_RUNTIME"


def test_parse_runtime():
    assert parse_runtime(None) is None
    assert parse_runtime(90) == 90.0
    assert parse_runtime("90m") == 5400.0
    assert parse_runtime("2h30m") == 9000.0
    assert parse_runtime("04:00:00") == 14400.0
    assert parse_runtime("1-00:00:10") == 86410.0
    for bad in ("soon", "0", "3x", 0, -5, True, "10m soon"):
        with pytest.raises(ValueError, match="MAX_RUNTIME"):
            parse_runtime(bad)


def test_bad_max_runtime_is_a_config_error_naming_the_macro(train_kwargs):
    with pytest.raises(ConfigValueError, match=r"MAX_RUNTIME = .soon.*\(ExecutionConfig.max_runtime\)"):
        train(**train_configs(**{**train_kwargs, "max_runtime": "soon"}))
    assert not pathlib.Path(train_kwargs["model_dir"]).exists()


@pytest.mark.slow  # 7 s
def test_max_runtime_stops_before_the_budget_runs_out(train_kwargs):
    """A budget already nearly spent by the time the loop runs (the import of the module started the clock)
    stops after the first step, saved."""
    from optiml_jax.training import preemption

    spent = time.monotonic() - preemption.PROCESS_START
    with pytest.raises(Preempted, match="MAX_RUNTIME: stopped after step 1 of 50") as e:
        train(**train_configs(**{**train_kwargs, "train_steps": 50, "checkpoint_period": 100, "max_runtime": spent + 1000,
                 "max_runtime_margin_s": 999}))
    assert _steps_on_disk(train_kwargs["model_dir"]) == [1] and e.value.reason == "MAX_RUNTIME"


# ---------------------------------------------------------------- the command, as a scheduler sees it
def _command(model_dir, steps=24, extra=(), gin_file="gin/runs/quickstart.gin"):
    return [sys.executable, "-m", "optiml_jax.train", f"--gin_file={gin_file}", "--no_progress",
            f"--gin.MODEL_DIR={model_dir}", f"--gin.TRAIN_STEPS={steps}", "--gin.CHECKPOINT_PERIOD=1000",
            "--gin.LOG_PERIOD=1", "--gin.BATCH_SIZE=4", "--gin.TASK_FEATURE_LENGTHS={'targets': 32}",
            "--gin.DROPOUT_RATE=0.1", "--gin.WARMUP_STEPS=3", "--gin.EvaluationConfig.eval_streams={}",
            "--gin.EvaluationConfig.eval_callback=None", *extra]


def _env(devices=2):
    return dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")


def _losses(model_dir) -> dict[int, list[float]]:
    out: dict[int, list[float]] = {}
    for line in (pathlib.Path(model_dir) / "metrics" / "train.jsonl").read_text().splitlines():
        rec = json.loads(line)
        out.setdefault(rec["step"], []).append(rec["loss"])
    return out


def _wait_for_step(procs, jsonl, step, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline and all(p.poll() is None for p in procs):
        if jsonl.is_file():
            steps = [json.loads(x)["step"] for x in jsonl.read_text().splitlines() if x.strip()]
            if steps and max(steps) >= step:
                return max(steps)
        time.sleep(0.02)
    raise AssertionError("the run finished or stalled before it could be signalled")


@pytest.mark.slow
def test_sigterm_to_the_command_exits_143_and_the_rerun_finishes_bitwise(tmp_path):
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    ref = subprocess.Popen(_command(ref_dir), cwd=REPO, env=_env(), stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
    log = tmp_path / "victim.log"  # a file, not a pipe nobody reads while the run goes on
    with open(log, "w") as f:
        victim = subprocess.Popen(_command(run_dir), cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=f)
        _wait_for_step([victim], run_dir / "metrics" / "train.jsonl", 5)
        victim.send_signal(signal.SIGTERM)
        victim.wait(timeout=120)
    err = log.read_text()
    assert victim.returncode == 143, err[-3000:]
    saved = _steps_on_disk(run_dir)
    assert len(saved) == 1 and 6 <= saved[0] < 24, saved  # the step it reached, with no periodic save due
    assert f"SIGTERM: stopped after step {saved[0]} of 24 and saved checkpoint {saved[0]}" in err
    assert "rerun the same command to resume" in err and "error:" not in err
    assert not (run_dir / "run.lock").exists()  # released: the rerun takes it without a stale-lock warning
    assert sorted(_losses(run_dir)) == list(range(saved[0]))

    _, ref_err = ref.communicate(timeout=300)
    assert ref.returncode == 0, ref_err[-3000:]
    resumed = subprocess.run(_command(run_dir), cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"restored {run_dir / 'checkpoints'} step {saved[0]}" in resumed.stderr
    ref_losses, run_losses = _losses(ref_dir), _losses(run_dir)
    assert sorted(run_losses) == list(range(24)) and all(len(v) == 1 for v in run_losses.values())
    assert run_losses == ref_losses  # bitwise


def test_a_second_signal_exits_at_once(tmp_path):
    """Two signals in a row: the second ends the process now with 143 (nothing after it runs)."""
    code = ("import os, signal, time\n"
            "from optiml_jax.training.preemption import PreemptionWatch\n"
            "with PreemptionWatch():\n"
            "    os.kill(os.getpid(), signal.SIGINT)\n"
            "    time.sleep(0.2)\n"
            "    os.kill(os.getpid(), signal.SIGINT)\n"
            "    time.sleep(30)\n"
            "print('not reached')\n")
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=_env(1), capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 143, run.stderr[-2000:]
    assert "SIGINT received: finishing the current step" in run.stderr
    assert "SIGINT again: exiting now without saving; the last intact checkpoint stays" in run.stderr
    assert "not reached" not in run.stdout


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_sigterm_to_one_of_two_processes_stops_both_at_the_same_saved_step(tmp_path):
    port = _free_port()
    run_dir = tmp_path / "mp"
    synthetic = "gin/runs/smoke_synthetic.gin"  # the global batch does not depend on the process count
    logs = [tmp_path / f"p{i}.log" for i in range(2)]
    files = [open(x, "w") for x in logs]
    constant_lr = ["--gin.LR_DECAY='constant'"]  # the schedule does not depend on TRAIN_STEPS: a shorter reference
    procs = [subprocess.Popen(_command(run_dir, steps=2000, gin_file=synthetic,
                                       extra=[*constant_lr, f"--coordinator_address=127.0.0.1:{port}",
                                              "--num_processes=2",
                                              f"--process_id={i}", "--cpu_collectives=gloo"]),
                              cwd=REPO, env=_env(2), stdout=subprocess.DEVNULL, stderr=files[i])
             for i in range(2)]
    try:
        _wait_for_step(procs, run_dir / "metrics" / "train.jsonl", 5, timeout=600)
        procs[1].send_signal(signal.SIGTERM)  # not the process that writes the metrics
        for p in procs:
            p.wait(timeout=300)
    finally:
        for p, f in zip(procs, files):
            if p.poll() is None:
                p.kill()
            f.close()
    errs = [x.read_text() for x in logs]
    for p, err in zip(procs, errs):
        assert p.returncode == 143, err[-3000:]
    saved = _steps_on_disk(run_dir)
    assert len(saved) == 1 and saved[0] < 2000, saved
    assert f"SIGTERM: stopped after step {saved[0]} of 2000 and saved checkpoint {saved[0]}" in errs[1]
    assert f"SIGTERM (on another process): stopped after step {saved[0]} of 2000" in errs[0]
    # Both processes wrote their shards of that step: one process restores it and goes on like a single run.
    end = saved[0] + 4
    resumed = subprocess.run(_command(run_dir, steps=end, gin_file=synthetic, extra=constant_lr),
                             cwd=REPO, env=_env(4),
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"step {saved[0]}" in resumed.stderr and "TRAIN_STEPS changed on resume" in resumed.stderr
    single = subprocess.run(_command(tmp_path / "single", steps=end, gin_file=synthetic, extra=constant_lr),
                            cwd=REPO,
                            env=_env(4), capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    got, want = _losses(run_dir), _losses(tmp_path / "single")
    assert sorted(got) == sorted(want) == list(range(end)) and all(len(v) == 1 for v in got.values())
    np.testing.assert_allclose([got[s][0] for s in range(end)], [want[s][0] for s in range(end)], rtol=2e-5)


@pytest.mark.slow
def test_max_runtime_on_the_command_line_saves_and_exits_143_before_the_budget(tmp_path):
    run_dir, budget = tmp_path / "run", 150
    began = time.monotonic()
    run = subprocess.run(_command(run_dir, steps=100000, gin_file="gin/runs/smoke_synthetic.gin",
                                  extra=[f"--gin.MAX_RUNTIME='{budget}s'", "--gin.ExecutionConfig.max_runtime_margin_s=10"]),
                         cwd=REPO, env=_env(), capture_output=True, text=True, timeout=budget + 120)
    elapsed = time.monotonic() - began
    assert run.returncode == 143, run.stderr[-3000:]
    last = _steps_on_disk(run_dir)[-1]  # after the periodic ones (every 1000 steps)
    assert f"MAX_RUNTIME: stopped after step {last} of 100000 and saved checkpoint {last}" in run.stderr
    assert elapsed < budget, elapsed  # the whole command, interpreter start to exit, within the budget
    assert sorted(_losses(run_dir)) == list(range(last))
