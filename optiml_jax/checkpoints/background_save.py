"""A checkpoint save that leaves the training step alone: the step path only dispatches a copy of the state into
host memory; checksums, Orbax's save and its commit run on one background thread.

Why: Orbax's `CheckpointManager.save` is asynchronous only in its write. Its synchronous part (worker threads
started, the device-to-host copy waited for, directories created) and our checksums held the step that saves
for 0.15-0.7 s even for a 1.9 MiB state (perf/RESULTS.md, "Async checkpoint saves"): 8-35x a tiny model's step.
Here the step path dispatches one jitted copy of the state into the same shardings in pinned host memory
(`host_snapshot`) (the next step may donate the state's buffers: PJRT lets the copy read them first),
and hands the copy to the thread. The thread computes the checksums from the host copy
(`integrity.host_partial_checksums`, bit-equal to the on-device `array_checksums`), calls Orbax's save and waits
for its commit, so every error (a full disk, a permission) surfaces on the next step's `check_for_errors`.

One save at a time: a save asked for while the previous one is still running waits for it (a save period shorter
than a save's duration cannot be hidden; Orbax's own save waits the same way). The thread runs at the process's
own CPU priority: at nice +10 a tiny model's save took up to 7 s instead of 1.4 s on a loaded 2-core host (so
saves queued behind it), and a preemption's final save must not starve within a grace period. On a CPU host the
writer therefore still competes with XLA:CPU for the cores in the steps right after a save (perf/RESULTS.md).

Several processes: nothing on this thread may issue a device collective, which would interleave with the training
step's own collectives in another order on each process (a deadlock, or a mixed-up exchange). Orbax's save barriers
are device collectives by default (`multihost_utils.sync_global_devices`): `use_coordination_service_barriers`
sends them through the coordination service instead (Orbax's own async commit already waits there), the
checksums' partial sums are added up through its key-value store (`sum_across_processes`), and JAX's preemption
sync point is left to the main thread (`TrainCheckpointManager` answers Orbax's question with False). The host
copy is one SPMD program without communication, dispatched on the main thread at the same step everywhere.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

log = logging.getLogger(__name__)
SUM_TIMEOUT_MS = 10 * 60 * 1000  # how long a saver waits for the other processes' partial sums


def _identity(tree):
    return tree


@functools.lru_cache(maxsize=8)
def _copy_program(treedef, shardings: tuple, memory_kind: str | None):
    """One jitted copy of the whole state (one dispatch: `jax.device_put` of the 111 arrays of a tiny model took
    7-20 ms on a loaded CPU, this takes ~1 ms). Outputs never alias non-donated inputs, so it is a copy."""
    out = [s.with_memory_kind(memory_kind) if memory_kind else s for s in shardings]
    return jax.jit(_identity, out_shardings=jax.tree_util.tree_unflatten(treedef, out))


def _snapshot_program(state: Any):
    leaves, treedef = jax.tree_util.tree_flatten(state)
    shardings = tuple(x.sharding for x in leaves)
    return _copy_program(treedef, shardings, "pinned_host"), _copy_program(treedef, shardings, None)


def prepare_snapshot(state: Any) -> None:
    """Compile `host_snapshot`'s program for `state` (arrays or ShapeDtypeStructs with shardings) ahead of time."""
    pinned, device = _snapshot_program(state)
    try:
        pinned.lower(state).compile()
    except (ValueError, NotImplementedError, jax.errors.JaxRuntimeError):
        device.lower(state).compile()


def host_snapshot(state: Any) -> Any:
    """A copy of `state` in host memory with the same shardings (dispatched, not waited for). Where a backend has
    no pinned host memory, a copy on the devices (the same bytes again in device memory until the save is done)."""
    pinned, device = _snapshot_program(state)
    try:
        return pinned(state)
    except (ValueError, NotImplementedError, jax.errors.JaxRuntimeError) as e:
        first = e
    try:  # arrays on different sets of devices (one program cannot take them): one copy per array
        return jax.device_put(state, jax.tree.map(lambda x: x.sharding.with_memory_kind("pinned_host"), state),
                              may_alias=False)
    except (ValueError, NotImplementedError, jax.errors.JaxRuntimeError):
        pass
    log.info("no pinned host memory for checkpoint copies (%s): copying on the devices", first)
    try:
        return device(state)
    except ValueError:
        return jax.device_put(state, may_alias=False)


class BackgroundSaver:
    """Runs `save_fn(*job)` for one job at a time on a daemon thread; remembers the first error.

    `submit` returns at once unless the previous job is still running (then it waits for that one first).
    `raise_error` raises a stored error (once); `wait` blocks until no job is left."""

    def __init__(self, save_fn: Callable[..., None], name: str = "optiml-checkpoint-save"):
        self._save_fn = save_fn
        self._cond = threading.Condition()
        self._job: tuple | None = None
        self._busy = False
        self._error: BaseException | None = None
        self._closed = False
        self.last_duration_s = 0.0  # of the newest finished job: checksums, Orbax's save and its commit
        self.slowest_duration_s = 0.0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, *job) -> float:
        """Queue `job`; returns the seconds spent waiting for the previous job (0 when it had finished). A
        previous job's error is raised here instead (the job is not queued)."""
        began = time.perf_counter()
        with self._cond:
            while self._busy and not self._closed:
                self._cond.wait()
            if self._closed:
                raise RuntimeError("the checkpoint saver is closed")
            error, self._error = self._error, None
            if error is not None:
                raise error
            self._job, self._busy = job, True
            self._cond.notify_all()
        return time.perf_counter() - began

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._job is None and not self._closed:
                    self._cond.wait()
                if self._job is None:
                    return
                job = self._job
            began = time.perf_counter()
            try:
                self._save_fn(*job)
            except BaseException as e:  # noqa: BLE001 (handed to the training thread)
                with self._cond:
                    if self._error is None:
                        self._error = e
            took = time.perf_counter() - began
            with self._cond:
                self.last_duration_s = took
                self.slowest_duration_s = max(self.slowest_duration_s, took)
                self._job, self._busy = None, False
                self._cond.notify_all()

    def raise_error(self) -> None:
        with self._cond:
            error, self._error = self._error, None
        if error is not None:
            raise error

    def wait(self) -> None:
        with self._cond:
            while self._busy:
                self._cond.wait()

    def close(self) -> None:
        self.wait()
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=60)


def use_coordination_service_barriers() -> None:
    """Orbax's barriers through the coordination service (`client.wait_at_barrier`) instead of device collectives;
    process-wide (Orbax reads an absl flag), so the trainer's restores and set-asides wait there too."""
    from absl import flags

    flag = flags.FLAGS["experimental_orbax_use_distributed_barrier"]
    flag.value, flag.present = True, 1  # read before absl parsed the command line: `present` lets it be read


def sum_across_processes(key: str, partial: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """{name: uint32[2]} partial sums of every process added modulo 2**32, exchanged through the coordination
    service's key-value store under `key` (unique per save), so that no device collective is issued."""
    from jax._src import distributed  # the client Orbax's own barriers use (multihost.get_jax_distributed_client)

    from optiml_jax.checkpoints.integrity import add_partials

    client, me = distributed.global_state.client, jax.process_index()
    client.key_value_set(f"{key}/{me}", json.dumps({k: [int(x) for x in v] for k, v in partial.items()}))
    parts = []
    for i in range(jax.process_count()):
        if i == me:
            parts.append(partial)
            continue
        theirs = json.loads(client.blocking_key_value_get(f"{key}/{i}", SUM_TIMEOUT_MS))
        parts.append({k: np.asarray(v, np.uint32) for k, v in theirs.items()})
    return add_partials(parts)
