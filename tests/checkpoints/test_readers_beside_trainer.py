"""eval/infer/convert read a run that may be training: a checkpoint pruned while it is read is not damage. Reading
the run's latest step takes the newest step there is then; a step asked for by number that vanished is a plain
'removed while being read' (exit 2), never CorruptCheckpointError (exit 5)."""

import shutil

import numpy as np
import orbax.checkpoint as ocp
import pytest

from optiml_jax.checkpoints.errors import CheckpointVanishedError, CorruptCheckpointError
from optiml_jax.checkpoints.training_runs import TrainCheckpointManager, restore_params_from_run


def _run_with_steps(run, steps):
    manager = TrainCheckpointManager(run, period=1, keep=None, async_save=False)
    for s in steps:
        params = {"w": np.full((4, 3), float(s), np.float32)}
        manager.save(s, {"params": params, "step": np.int32(s)}, {"step": s}, force=True)
    manager.wait_until_finished()
    manager.close()


def _target():
    import jax

    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return {"w": jax.ShapeDtypeStruct((4, 3), np.float32, sharding=device)}


@pytest.fixture
def prune_during_read(monkeypatch):
    """Orbax's restore, but the step being read is deleted first (what the trainer's pruning does to a reader that
    picked it a moment earlier); each step is pruned once."""
    original = ocp.CheckpointManager.restore
    pruned = []

    def restore(self, step, *args, **kwargs):
        path = self.directory / str(step)
        if step in prune and step not in pruned and path.exists():
            pruned.append(step)
            shutil.rmtree(path)
        return original(self, step, *args, **kwargs)

    prune: set[int] = set()
    monkeypatch.setattr(ocp.CheckpointManager, "restore", restore)
    return prune, pruned


def test_the_latest_step_pruned_while_read_gives_the_newest_that_stays(tmp_path, prune_during_read):
    prune, pruned = prune_during_read
    _run_with_steps(tmp_path / "run", [2, 4, 6])
    prune.add(6)
    params, step = restore_params_from_run(tmp_path / "run", _target())
    assert pruned == [6] and step == 4
    np.testing.assert_array_equal(np.asarray(params["w"]), np.full((4, 3), 4.0))
    assert not (tmp_path / "run" / "checkpoints_corrupt").exists()


def test_a_named_step_that_vanished_is_not_damage(tmp_path, prune_during_read):
    prune, _ = prune_during_read
    _run_with_steps(tmp_path / "run", [2, 4])
    prune.add(2)
    with pytest.raises(CheckpointVanishedError, match=r"checkpoint step 2 at .* was removed while being read.*"
                                                      r"it now has steps \[4\]") as e:
        restore_params_from_run(tmp_path / "run" / "checkpoints" / "2", _target())
    assert not isinstance(e.value, CorruptCheckpointError)
    from optiml_jax.cli.errors import EXIT_USAGE, _exit_code

    assert _exit_code(e.value) == EXIT_USAGE


def test_a_step_deleted_file_by_file_while_read_is_not_damage(tmp_path, monkeypatch):
    """Orbax deletes a pruned step file by file, then the directory (without `todelete_subdir`, as older runs did):
    a reader can fail on a missing file while the step directory still exists. It waits for the directory to go
    and reads the newest step instead of calling this one damaged."""
    import threading

    _run_with_steps(tmp_path / "run", [2, 4, 6])
    original = ocp.CheckpointManager.restore
    deleting = []

    def restore(self, step, *args, **kwargs):
        path = self.directory / str(step)
        if step == 6 and not deleting:
            deleting.append(step)
            shutil.rmtree(path / "state")  # half deleted: the directory and its data item are still there
            threading.Timer(0.3, shutil.rmtree, args=(path,)).start()
        return original(self, step, *args, **kwargs)

    monkeypatch.setattr(ocp.CheckpointManager, "restore", restore)
    params, step = restore_params_from_run(tmp_path / "run", _target())
    assert deleting == [6] and step == 4
    np.testing.assert_array_equal(np.asarray(params["w"]), np.full((4, 3), 4.0))


def test_a_damaged_step_that_stays_is_still_damage(tmp_path, monkeypatch):
    """The wait above is for a step that vanishes: one whose files are missing and whose directory stays is
    reported as damaged (exit 5), after `VANISH_WAIT_S`."""
    from optiml_jax.checkpoints import run_readers

    monkeypatch.setattr(run_readers, "VANISH_WAIT_S", 0.2)
    _run_with_steps(tmp_path / "run", [2, 4])
    shutil.rmtree(tmp_path / "run" / "checkpoints" / "4" / "state")
    with pytest.raises(CorruptCheckpointError, match=r"checkpoint step 4 .* cannot be restored"):
        restore_params_from_run(tmp_path / "run", _target())


def test_pruning_is_one_rename_then_a_delete(tmp_path, monkeypatch):
    """The trainer's pruned steps leave checkpoints/ in one rename (into checkpoints/pruned/, deleted after the
    save's commit), so a reader sees a step whole or absent; the steps listed are the kept ones."""
    import jax

    from optiml_jax.checkpoints.training_runs import PRUNED_SUBDIR, finalized_steps_on_disk

    purge = TrainCheckpointManager._purge_pruned
    monkeypatch.setattr(TrainCheckpointManager, "_purge_pruned", lambda self: None)  # to see what was moved
    manager = TrainCheckpointManager(tmp_path / "run", period=1, keep=1, async_save=True)
    for s in (1, 2, 3):
        manager.save(s, {"params": {"w": jax.numpy.full((4, 3), float(s))}, "step": jax.numpy.int32(s)},
                     {"step": s}, force=True)
    manager.wait_until_finished()
    assert manager.all_steps() == [3] and finalized_steps_on_disk(tmp_path / "run") == [3]
    pruned = tmp_path / "run" / "checkpoints" / PRUNED_SUBDIR
    assert sorted(p.name for p in pruned.iterdir()) == ["1", "2"]  # moved whole, not deleted in place
    assert (pruned / "1" / "state").is_dir()
    purge(manager)
    assert not pruned.exists()
    manager.close()
    params, step = restore_params_from_run(tmp_path / "run", _target())
    assert step == 3
    np.testing.assert_array_equal(np.asarray(params["w"]), np.full((4, 3), 3.0))

