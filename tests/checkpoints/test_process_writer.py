"""The idle-priority checkpoint writer process (`CHECKPOINT_WRITER = 'process'`, checkpoints/save_process.py):
its checkpoints restore bitwise and are pruned like the thread writer's; it runs under SCHED_IDLE; a final save
abandons a save in flight instead of waiting behind it; a failed or killed worker is an error naming the step,
and the older checkpoints stay."""

import json
import os
import signal
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from optiml_jax.checkpoints.errors import CheckpointSaveError
from optiml_jax.checkpoints.integrity import array_checksums, array_specs
from optiml_jax.checkpoints.save_process import LOG_NAME
from optiml_jax.checkpoints.training_runs import TrainCheckpointManager


def _tree(seed: int):
    mesh = Mesh(np.array(jax.devices()[:4]).reshape(2, 2), ("a", "b"))
    rng = np.random.default_rng(seed)
    return {
        "f32": jax.device_put(jnp.asarray(rng.normal(size=(8, 6)), jnp.float32), NamedSharding(mesh, P("a", "b"))),
        "bf16": jax.device_put(jnp.asarray(rng.normal(size=(6, 4)), jnp.bfloat16), NamedSharding(mesh, P(None, "a"))),
        "layers": [jnp.asarray(rng.integers(-2**30, 2**30, size=(4, 3)), jnp.int32),
                   jnp.asarray(rng.integers(-100, 100, size=(3, 3)), jnp.int8)],
        "mask": jnp.asarray(rng.integers(0, 2, size=(7,)) > 0),
        "step": jnp.asarray(seed, jnp.int32),
    }


def _target(tree):
    one = NamedSharding(Mesh(np.array(jax.devices()[:1]), ("x",)), P())
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=one), tree)


def _assert_restores(mgr, step, tree):
    state, data, got = mgr.restore(_target(tree), step)  # verifies the checksums recorded with the save
    assert got == step and data["step"] == step
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(tree)):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _shm_files():
    return set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()


def _wait_for_idle_policy(pid, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.sched_getscheduler(pid) == os.SCHED_IDLE:
            return
        time.sleep(0.05)
    raise AssertionError(f"writer {pid} never switched to SCHED_IDLE")


def test_the_worker_commits_bitwise_prunes_like_the_thread_writer_and_runs_idle(tmp_path):
    mgr = TrainCheckpointManager(tmp_path / "run", period=1, keep=2, writer="process")
    pid = mgr._writer.pid
    _wait_for_idle_policy(pid)
    trees = {s: _tree(s) for s in (1, 2, 3)}
    for s, tree in trees.items():
        assert mgr.save(s, tree, {"step": s}, force=True)
    mgr.wait_until_finished()
    assert mgr._writer.pid == pid  # one worker for all three saves
    assert mgr.all_steps() == [2, 3]  # keep=2: the worker pruned step 1, like Orbax does in the trainer
    assert not (tmp_path / "run" / "checkpoints" / "pruned").exists() or not any(
        (tmp_path / "run" / "checkpoints" / "pruned").iterdir())
    for s in (2, 3):
        _assert_restores(mgr, s, trees[s])
    for s in (2, 3):  # the worker's integrity record, from the bytes it saved, is the trainer's own
        record = json.loads((tmp_path / "run" / "checkpoints" / str(s) / "data" / "metadata").read_text())
        assert record["integrity"]["checksums"] == array_checksums(trees[s])
        assert record["integrity"]["specs"] == array_specs(trees[s]) and record["step"] == s
    mgr.close()
    assert (tmp_path / "run" / LOG_NAME).is_file()
    with pytest.raises(ProcessLookupError):  # closed: the worker is gone
        for _ in range(100):
            os.kill(pid, 0)
            time.sleep(0.1)


def test_a_stops_save_abandons_a_starved_save_in_flight_and_writes_at_full_priority(tmp_path, caplog):
    mgr = TrainCheckpointManager(tmp_path / "run", period=1, keep=3, writer="process")
    first, starved, final = _tree(1), _tree(2), _tree(3)
    mgr.save(1, first, {"step": 1}, force=True)
    mgr.wait_until_finished()
    os.kill(mgr._writer.pid, signal.SIGSTOP)  # a worker that gets no CPU (a host busy with other work)
    shm_before = _shm_files()
    mgr.save(2, starved, {"step": 2}, force=True)
    time.sleep(0.5)
    assert _shm_files() == shm_before  # the bytes in flight live in an anonymous buffer: a crash leaves nothing
    mgr.save(3, final, {"step": 3}, force=True, final=True, urgent=True)  # a stop's save: does not wait for step 2
    mgr.wait_until_finished()
    assert "abandoned the idle-priority save of step 2 for the stop's save of step 3" in caplog.text
    assert mgr.all_steps() == [1, 3]
    assert not list((tmp_path / "run" / "checkpoints").glob("2*"))  # no half-written step 2 left behind
    _assert_restores(mgr, 1, first)
    _assert_restores(mgr, 3, final)
    mgr.close()


def test_a_killed_worker_is_an_error_naming_the_step_and_the_older_checkpoints_stay(tmp_path):
    mgr = TrainCheckpointManager(tmp_path / "run", period=1, keep=3, writer="process")
    first = _tree(1)
    mgr.save(1, first, {"step": 1}, force=True)
    mgr.wait_until_finished()
    os.kill(mgr._writer.pid, signal.SIGSTOP)
    mgr.save(2, _tree(2), {"step": 2}, force=True)
    time.sleep(0.5)
    os.kill(mgr._writer.pid, signal.SIGKILL)  # e.g. the kernel's OOM killer, mid-save
    with pytest.raises(CheckpointSaveError, match=r"step 2 into .*checkpoints/2 failed: the checkpoint writer "
                                                  r"process exited with code -9 before committing step 2"):
        mgr.wait_until_finished()
    assert mgr.all_steps() == [1]
    _assert_restores(mgr, 1, first)
    second = _tree(4)  # the next save starts a new worker
    mgr.save(4, second, {"step": 4}, force=True)
    mgr.wait_until_finished()
    assert mgr.all_steps() == [1, 4]
    _assert_restores(mgr, 4, second)
    mgr.close()


def test_an_error_in_the_worker_names_the_step_directory(tmp_path):
    mgr = TrainCheckpointManager(tmp_path / "run", period=1, writer="process")
    mgr.save(1, _tree(1), {"step": 1}, force=True)
    mgr.wait_until_finished()
    (tmp_path / "run" / "checkpoints" / "1" / "state").rename(tmp_path / "moved")  # step 1 exists: Orbax refuses
    mgr._manager.reload()
    mgr._saver.submit(1, _tree(1), {"step": 1}, True, True)
    with pytest.raises(CheckpointSaveError, match=r"saving checkpoint step 1 into .*checkpoints/1 failed: "):
        mgr.wait_until_finished()
    mgr.close()


def test_the_process_writer_needs_async_saves(tmp_path):
    with pytest.raises(ValueError, match="'process' checkpoint writer needs asynchronous saves"):
        TrainCheckpointManager(tmp_path / "run", period=1, async_save=False, writer="process")
    with pytest.raises(ValueError, match="checkpoint writer 'proces': must be one of"):
        TrainCheckpointManager(tmp_path / "run", period=1, writer="proces")


@pytest.mark.slow
def test_train_with_the_process_writer_saves_what_the_thread_writer_saves(tmp_path):
    from optiml_jax.testing.train_configs import train_configs
    from optiml_jax.training.model_config import opt_config
    from optiml_jax.training.partitioning import Partitioner, make_mesh, standard_rules
    from optiml_jax.training.synthetic_data import synthetic_stream
    from optiml_jax.training.train_loop import train

    runs = {}
    for writer in ("thread", "process"):
        runs[writer] = train(**train_configs(
            model_dir=str(tmp_path / writer), mixture_or_task_name="synthetic", stream_factory=synthetic_stream,
            task_feature_lengths={"targets": 32}, train_steps=4, batch_size=4,
            model_config=opt_config("tiny", vocab_size=512, dtype="float32", dropout_rate=0.0),
            partitioner=Partitioner(make_mesh((1, 1, 1), jax.devices()[:1]), standard_rules("data_parallel")),
            learning_rate=1e-3, warmup_steps=1, checkpoint_period=2, progress=False, peak_flops=1e11,
            checkpoint_writer=writer))
        mgr = TrainCheckpointManager(tmp_path / writer, period=2)
        assert mgr.all_steps() == [2, 4]  # step 2 by the worker (or thread), step 4 the final save
        mgr.close()
    for a, b in zip(jax.tree.leaves(jax.device_get(runs["thread"].state)),
                    jax.tree.leaves(jax.device_get(runs["process"].state))):
        np.testing.assert_array_equal(a, b)


def test_checkpoint_writer_is_checked_naming_its_macro(tmp_path):
    from optiml_jax.training.run_config import CheckpointConfig

    with pytest.raises(ValueError, match=r"CHECKPOINT_WRITER \(CheckpointConfig.checkpoint_writer\) = 'proces'"):
        CheckpointConfig(model_dir=str(tmp_path), checkpoint_writer="proces")
    with pytest.raises(ValueError, match=r"CHECKPOINT_WRITER .* 'thread' when async_checkpoints is False"):
        CheckpointConfig(model_dir=str(tmp_path), checkpoint_writer="process", async_checkpoints=False)
