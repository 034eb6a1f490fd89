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
