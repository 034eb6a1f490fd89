"""A run owns its MODEL_DIR (run lock: a second trainer refuses, a dead run's lock is taken over) and its storage
is checked before the first step; a save that fails ends the run within seconds naming path and OS error. The
faults are real: another live process holding the lock, an immutable (chattr +i) checkpoints/ directory, a
1 MiB tmpfs."""

import json
import os
import pathlib
import socket
import subprocess
import sys
import time

import pytest

from optiml_jax.testing.train_configs import train_configs
from optiml_jax.checkpoints.errors import CheckpointSaveError, StorageError
from optiml_jax.training.errors import RunLockedError
from optiml_jax.training.run_dir import LOCK_FILE, RunLock
from optiml_jax.training.train_loop import train

REPO = pathlib.Path(__file__).resolve().parents[2]


def _holder(model_dir: pathlib.Path) -> subprocess.Popen:
    """Another live process that holds MODEL_DIR's run lock until its stdin closes."""
    code = ("import sys; from optiml_jax.training.run_dir import RunLock; "
            f"l = RunLock({str(model_dir)!r}); l.acquire(); print('locked', flush=True); sys.stdin.read(); l.release()")
    p = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert p.stdout.readline().strip() == "locked"
    return p


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_second_trainer_refuses_while_another_process_holds_the_lock(train_kwargs, tmp_path):
    run = pathlib.Path(train_kwargs["model_dir"])
    run.mkdir(parents=True)
    (run / "metrics").mkdir()
    (run / "metrics" / "train.jsonl").write_text('{"step": 0, "loss": 1.0}\n')
    holder = _holder(run)
    try:
        before = sorted(str(p) for p in run.rglob("*"))
        t0 = time.time()
        with pytest.raises(RunLockedError) as e:
            train(**train_configs(**train_kwargs))
        msg = str(e.value)
        assert f"pid {holder.pid} on host {socket.gethostname()}" in msg and str(run) in msg and LOCK_FILE in msg
        assert time.time() - t0 < 60
        # Nothing of the other run was touched: no checkpoints/, model_config.json or metrics rewrite.
        assert sorted(str(p) for p in run.rglob("*")) == before
        assert (run / "metrics" / "train.jsonl").read_text() == '{"step": 0, "loss": 1.0}\n'
    finally:
        holder.communicate("", timeout=30)
    assert not (run / LOCK_FILE).exists()  # the holder released it


def test_lock_records_owner_and_is_released(tmp_path):
    lock = RunLock(tmp_path / "run")
    with lock:
        record = json.loads((tmp_path / "run" / LOCK_FILE).read_text())
        assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
        assert record["started"] <= time.time() and record["command"]
        with pytest.raises(RunLockedError, match=f"pid {os.getpid()} on host"):
            RunLock(tmp_path / "run").acquire()
    assert not (tmp_path / "run" / LOCK_FILE).exists()


def test_stale_locks_are_taken_over_with_a_warning(tmp_path, caplog):
    run = tmp_path / "run"
    run.mkdir()
    lock_file = run / LOCK_FILE
    # A run on this host that died (SIGKILL leaves its lock behind).
    lock_file.write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname(), "started_iso": "earlier",
                                     "command": "python -m optiml_jax.train", "token": "dead"}))
    with caplog.at_level("WARNING"):
        with RunLock(run):
            assert json.loads(lock_file.read_text())["pid"] == os.getpid()
    assert "took over the stale run lock" in caplog.text and "no longer exists" in caplog.text
    # A run on another host: live while its heartbeat is fresh, stale once it is older than stale_after_s.
    lock_file.write_text(json.dumps({"pid": 1, "host": "other-host", "started_iso": "t", "command": "c",
                                     "token": "other"}))
    with pytest.raises(RunLockedError, match="pid 1 on host other-host"):
        RunLock(run, stale_after_s=600).acquire()
    old = time.time() - 3600
    os.utime(lock_file, (old, old))
    with RunLock(run, stale_after_s=600):
        assert json.loads(lock_file.read_text())["token"] != "other"
    assert "heartbeat is 3600 s old" in caplog.text


def test_heartbeat_refreshes_the_lock(tmp_path):
    with RunLock(tmp_path / "run", heartbeat_s=0.05):
        f = tmp_path / "run" / LOCK_FILE
        old = time.time() - 1000
        os.utime(f, (old, old))
        time.sleep(0.5)
        assert time.time() - f.stat().st_mtime < 5


@pytest.fixture
def immutable():
    """Makes a directory immutable for real (root ignores chmod: chattr +i; other users: chmod 555)."""
    made = []

    def make(path: pathlib.Path):
        path.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode:
                pytest.skip("chattr +i is not available here")
        else:
            path.chmod(0o555)
        made.append(path)
        try:
            (path / "probe").write_text("x")
        except OSError:
            return
        pytest.skip(f"could not make {path} unwritable")

    yield make
    for path in made:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(path)], capture_output=True)
        else:
            path.chmod(0o755)


def test_unwritable_checkpoints_dir_fails_before_the_first_step(train_kwargs, immutable):
    run = pathlib.Path(train_kwargs["model_dir"])
    immutable(run / "checkpoints")
    t0 = time.time()
    with pytest.raises(StorageError) as e:
        train(**train_configs(**train_kwargs))
    assert str(run / "checkpoints") in str(e.value) and "not writable" in str(e.value)
    assert "Operation not permitted" in str(e.value) or "Permission denied" in str(e.value)
    assert time.time() - t0 < 120
    assert not (run / "metrics").exists() and not (run / LOCK_FILE).exists()  # no step ran; the lock was released


def test_a_save_that_fails_mid_run_ends_it_within_seconds(train_kwargs, immutable):
    """checkpoints/ passes the pre-flight check, then becomes unwritable (setup_callback runs after the check):
    the first save fails in Orbax's background thread and the run stops at the next step with path and OS error,
    instead of training on (or waiting on a barrier) with no checkpoint."""
    run = pathlib.Path(train_kwargs["model_dir"])
    when = {}

    def break_storage(model_dir):
        immutable(pathlib.Path(model_dir) / "checkpoints")
        when["broken"] = time.time()

    with pytest.raises(CheckpointSaveError) as e:
        train(**train_configs(**{**train_kwargs, "train_steps": 6, "setup_callback": break_storage}))
    elapsed = time.time() - when["broken"]
    msg = str(e.value)
    assert str(run / "checkpoints") in msg and ("Operation not permitted" in msg or "Permission denied" in msg), msg
    assert elapsed < 120, elapsed  # includes compiling the step; the old failure mode waited 300 s on a barrier
    records = [json.loads(x)["step"] for x in (run / "metrics" / "train.jsonl").read_text().splitlines()]
    assert records[:2] == [0, 1] and max(records) < 4  # stopped right after the failed save of step 2


def test_too_little_free_space_is_an_error_before_the_first_step(train_kwargs, tmp_path):
    run = tmp_path / "small"
    run.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(run)],
                                           capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        with pytest.raises(StorageError, match=r"small/checkpoints: .* free, but one checkpoint of this state needs"):
            train(**train_configs(**{**train_kwargs, "model_dir": str(run)}))
        assert not (run / "metrics").exists()
    finally:
        subprocess.run(["umount", str(run)], capture_output=True)


@pytest.mark.slow
def test_two_real_trainers_on_one_model_dir(tmp_path):
    """Two `python -m optiml_jax.train` on one MODEL_DIR, started together: whichever takes the run lock first
    finishes with exactly one record per step and all its checkpoints; the other exits 4 naming it. (Started
    one after the other, the second could find the first already done on a loaded machine: it then resumed a
    finished run and exited 0, and the test measured the machine's speed instead of the lock.)"""
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "optiml_jax.train", "--gin_file=gin/runs/smoke_synthetic.gin", "--no_progress",
           f"--gin.MODEL_DIR={run}", "--gin.TRAIN_STEPS=30", "--gin.CHECKPOINT_PERIOD=10", "--gin.BATCH_SIZE=4",
           "--gin.TASK_FEATURE_LENGTHS={'targets': 32}"]
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1",
               PYTHONPATH=str(REPO))
    procs = [subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.pid, p.returncode, err) for p in procs for _, err in [p.communicate(timeout=600)]]
    assert sorted(rc for _, rc, _ in results) == [0, 4], [(rc, err[-2000:]) for _, rc, err in results]
    (winner, _, _), = [r for r in results if r[1] == 0]
    (_, _, refused), = [r for r in results if r[1] == 4]
    assert f"pid {winner}" in refused and "Traceback" not in refused
    steps = [json.loads(x)["step"] for x in (run / "metrics" / "train.jsonl").read_text().splitlines()]
    assert steps == list(range(30))
    assert sorted(int(p.name) for p in (run / "checkpoints").iterdir() if p.name.isdigit()) == [10, 20, 30]
