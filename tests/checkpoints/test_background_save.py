"""Background checkpoint saves (checkpoints/background_save.py): the step path only dispatches a host copy; the
checksums computed from that copy on the host equal the on-device ones; the save survives the donation of the
state it was given; a failure is reported on the next check; one save at a time."""

import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from optiml_jax.checkpoints import integrity
from optiml_jax.checkpoints.background_save import BackgroundSaver, host_snapshot
from optiml_jax.checkpoints.training_runs import TrainCheckpointManager


def _tree():
    mesh = Mesh(np.array(jax.devices()[:4]).reshape(2, 2), ("a", "b"))
    rng = np.random.default_rng(0)
    return {
        "f32": jax.device_put(jnp.asarray(rng.normal(size=(8, 6)), jnp.float32), NamedSharding(mesh, P("a", "b"))),
        "bf16": jax.device_put(jnp.asarray(rng.normal(size=(6, 4)), jnp.bfloat16), NamedSharding(mesh, P(None, "a"))),
        "i32": jax.device_put(jnp.asarray(rng.integers(-2**30, 2**30, size=(4, 3)), jnp.int32),
                              NamedSharding(mesh, P("b"))),
        "i8": jnp.asarray(rng.integers(-100, 100, size=(3, 3)), jnp.int8),
        "mask": jnp.asarray(rng.integers(0, 2, size=(7,)) > 0),
        "step": jnp.asarray(5, jnp.int32),
        "replicated": jax.device_put(jnp.arange(10.0), NamedSharding(mesh, P())),
        "numpy": np.arange(12, dtype=np.float32).reshape(3, 4),
    }


def test_host_checksums_of_the_shards_equal_the_device_checksums():
    tree = _tree()
    on_device = integrity.array_checksums(tree)
    assert integrity.format_checksums(integrity.host_partial_checksums(tree)) == on_device
    assert integrity.format_checksums(integrity.host_partial_checksums(host_snapshot(
        {k: v for k, v in tree.items() if isinstance(v, jax.Array)}))) == {k: v for k, v in on_device.items()
                                                                           if k != "numpy"}
    # two "processes", each holding half of the shards: their partial sums add up to the same checksums
    x = tree["f32"]
    shards = [s for s in x.addressable_shards if s.replica_id == 0]
    halves = [{"x": sum((integrity._host_partial(np.asarray(s.data), tuple(i.start or 0 for i in s.index), x.shape)
                         for s in part), np.zeros(2, np.uint32))} for part in (shards[:1], shards[1:])]
    assert integrity.format_checksums(integrity.add_partials(halves)) == integrity.array_checksums({"x": x})
    flipped = np.asarray(x).copy()
    flipped[5, 4] = np.nextafter(flipped[5, 4], np.inf)
    assert integrity.format_checksums(integrity.host_partial_checksums({"x": flipped})) != integrity.array_checksums(
        {"x": x})


def test_a_background_save_survives_the_donation_of_its_state_and_verifies(tmp_path):
    tree = {k: v for k, v in _tree().items() if isinstance(v, jax.Array)}
    expected = {k: np.asarray(v) for k, v in tree.items()}
    mgr = TrainCheckpointManager(tmp_path / "run", period=1)
    assert mgr._saver is not None  # one process, async: the background saver
    assert mgr.save(3, tree, {"step": 3}, force=True)
    for v in tree.values():  # what the next train step does to the state's buffers (donation)
        v.delete()
    mgr.wait_until_finished()
    target = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding),
                          {k: jax.device_put(v, NamedSharding(Mesh(np.array(jax.devices()[:1]), ("x",)), P()))
                           for k, v in expected.items()})
    state, data, step = mgr.restore(target)  # verifies the checksums recorded from the host copy
    mgr.close()
    assert step == 3 and data["step"] == 3
    for k, v in expected.items():
        np.testing.assert_array_equal(np.asarray(state[k]), v)


def test_the_saver_takes_one_job_at_a_time_and_submit_only_waits_for_a_running_one():
    release, started, done = threading.Event(), threading.Event(), []

    def job(name):
        started.set()
        release.wait(30)
        done.append(name)

    saver = BackgroundSaver(job)
    assert saver.submit("first") < 0.5  # nothing running: no wait
    assert started.wait(30)
    t = threading.Thread(target=lambda: done.append(("waited", saver.submit("second"))))
    t.start()
    time.sleep(0.3)
    assert done == []  # the second submit is held while the first job runs
    release.set()
    t.join(30)
    saver.wait()
    assert done[0] == "first" and done[1][0] == "waited" and done[1][1] >= 0.25 and done[2] == "second"
    saver.close()
