"""A checkpoint writer in its own process at idle CPU priority (`CHECKPOINT_WRITER = 'process'`).

Why: Orbax spends ~2-3 ms of CPU per array on a save (its asyncio loop, TensorStore specs, metadata): 250-370 ms
for a tiny model's 111 arrays, whatever their size (perf/RESULTS.md, "The floor"). On a host whose cores run the
training step (XLA:CPU) that CPU time comes out of the steps beside the save, and on a thread of the training
process it also holds the GIL that the step's dispatch needs: a save at idle priority on a thread only spread the
same excess over more steps. In a second process under `SCHED_IDLE` the writer runs only when a core is otherwise
idle and shares no GIL, so the steps around a save stay within 10% of the median (measured in perf/RESULTS.md).

What crosses: the host copy's arrays as raw bytes in one file (under /dev/shm where it exists), their dtypes and
shapes, the pickled tree structure, and the checkpoint's JSON item. The worker saves them with Orbax into the
same `checkpoints/` directory with the trainer's options (`max_to_keep`, the pruned subdirectory), so the
checkpoint on disk is the one the thread writer would write; the trainer's manager then re-reads the step list.
Only one save is ever in flight, and the trainer's own manager never saves while the worker does.

A final save (preemption, MAX_RUNTIME, the end of training) does not queue behind an idle-priority save: the
trainer abandons the worker's save in flight (the worker is killed, its temporary step directory removed; the
older checkpoints were never touched) and saves in its own process at full priority. If the training process
dies, the worker gets SIGKILL from the kernel (`PR_SET_PDEATHSIG`), so it never writes behind a resumed run.
Single-process runs only (several processes need Orbax's barriers in the training processes).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import pathlib
import pickle
import shutil
import subprocess
import sys
import tempfile
import threading
from typing import Any

log = logging.getLogger(__name__)
REPLY = "OPTIML_CHECKPOINT_WRITER "  # prefix of the worker's reply lines on stdout (other output is ignored)
LOG_NAME = "checkpoint_writer.log"  # the worker's stderr, beside checkpoints/


class WriterError(RuntimeError):
    """The worker could not save a step (its message says why)."""


def _buffer_dir() -> str:
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else tempfile.gettempdir()


class ProcessWriter:
    """The trainer's side: starts the worker at once (its imports overlap the trainer's setup), hands it one save
    at a time (`save`, blocking the calling thread until the step is committed) and can abandon the save in
    flight (`abandon`) for a full-priority final save."""

    def __init__(self, directory: pathlib.Path, *, keep: int | None, pruned_subdir: str):
        self.directory = pathlib.Path(directory)
        self._args = [sys.executable, "-c", _BOOTSTRAP, str(self.directory),
                      "none" if keep is None else str(int(keep)), pruned_subdir, str(os.getpid())]
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._in_flight: int | None = None
        self._abandoned = False
        self._start()

    def _start(self) -> None:
        env = {**os.environ, "JAX_PLATFORMS": "cpu"}  # the worker writes host bytes: it needs no accelerator
        log_path = self.directory.parent / LOG_NAME
        with open(log_path, "ab") as err:
            self._proc = subprocess.Popen(self._args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                          env=env, text=True, bufsize=1)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def save(self, step: int, snapshot: Any, data: dict) -> bool:
        """Save `snapshot` (a host copy) with the JSON item `data` as `step`; returns False if the save was
        abandoned (`abandon`), True once the worker has committed it. Raises `WriterError` otherwise."""
        import jax
        import numpy as np

        leaves, treedef = jax.tree_util.tree_flatten(snapshot)
        arrays = [np.asarray(x) for x in leaves]
        fd, buffer = tempfile.mkstemp(prefix=f"optiml_ckpt_{os.getpid()}_{step}_", dir=_buffer_dir())
        try:
            with os.fdopen(fd, "wb") as f:
                for a in arrays:
                    np.ascontiguousarray(a).tofile(f)
            request = {"step": int(step), "buffer": buffer, "data": data,
                       "arrays": [[str(a.dtype), list(a.shape)] for a in arrays],
                       "treedef": base64.b64encode(pickle.dumps(treedef)).decode()}
            with self._lock:
                if self._proc is None or self._proc.poll() is not None:
                    self._start()
                self._in_flight, self._abandoned = int(step), False
                proc = self._proc
            return self._exchange(proc, request)
        finally:
            with self._lock:
                self._in_flight = None
            pathlib.Path(buffer).unlink(missing_ok=True)

    def _exchange(self, proc: subprocess.Popen, request: dict) -> bool:
        try:
            proc.stdin.write(json.dumps(request) + "\n")
            proc.stdin.flush()
            for line in proc.stdout:
                if line.startswith(REPLY):
                    reply = json.loads(line[len(REPLY):])
                    if not reply["ok"]:
                        raise WriterError(reply["error"])
                    return True
        except (BrokenPipeError, OSError):
            pass
        with self._lock:
            if self._abandoned:
                return False
        code = proc.wait()
        raise WriterError(f"the checkpoint writer process exited with code {code} before committing step "
                          f"{request['step']} (its log: {self.directory.parent / LOG_NAME})")

    def abandon(self) -> int | None:
        """Kill the worker if a save is in flight and remove that step's temporary directory; returns the step
        abandoned (None if none was in flight). The next `save` starts a new worker."""
        with self._lock:
            step, proc = self._in_flight, self._proc
            if step is None or proc is None:
                return None
            self._abandoned, self._proc = True, None
        proc.kill()
        proc.wait()
        for tmp in self.directory.glob(f"{step}.orbax-checkpoint-tmp*"):
            shutil.rmtree(tmp, ignore_errors=True)
        return step

    def close(self) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            proc.stdin.close()
            proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()


# The worker's first lines, before any import of jax or orbax (whose imports would otherwise run at full
# priority beside the first steps): SCHED_IDLE (Linux; elsewhere the lowest nice value), and SIGKILL from the
# kernel when the trainer dies (PR_SET_PDEATHSIG = 1), checked against a trainer that died before it took.
_BOOTSTRAP = """
import os, signal, sys
try:
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
except (AttributeError, OSError):
    os.nice(19)
try:
    import ctypes
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)
except (OSError, AttributeError):
    pass
if os.getppid() != int(sys.argv[-1]):
    os._exit(1)
from optiml_jax.checkpoints.save_process import main
main(sys.argv[1:])
"""


def _save_one(manager, request: dict) -> None:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import orbax.checkpoint as ocp

    raw = np.fromfile(request["buffer"], dtype=np.uint8)
    leaves, offset = [], 0
    for dtype, shape in request["arrays"]:
        dt = jnp.dtype(dtype)
        n = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
        leaves.append(jnp.asarray(raw[offset:offset + n].view(dt).reshape(shape)))
        offset += n
    tree = jax.tree_util.tree_unflatten(pickle.loads(base64.b64decode(request["treedef"])), leaves)
    manager.reload()  # the trainer may have saved, pruned or set a step aside since the last request
    args = ocp.args.Composite(state=ocp.args.StandardSave(tree), data=ocp.args.JsonSave(request["data"]))
    manager.save(int(request["step"]), args=args, force=True)
    manager.wait_until_finished()


def main(argv: list[str]) -> None:
    directory, keep, pruned_subdir, _parent_pid = argv
    import orbax.checkpoint as ocp

    options = ocp.CheckpointManagerOptions(max_to_keep=None if keep == "none" else int(keep),
                                           enable_async_checkpointing=False, create=True,
                                           cleanup_tmp_directories=False, todelete_subdir=pruned_subdir)
    manager = ocp.CheckpointManager(directory, options=options)
    for line in sys.stdin:
        request = json.loads(line)
        try:
            _save_one(manager, request)
            reply = {"ok": True}
        except Exception as e:  # noqa: BLE001 (sent to the trainer, which raises it naming the step)
            reply = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(REPLY + json.dumps(reply) + "\n")
        sys.stdout.flush()
    manager.close()
