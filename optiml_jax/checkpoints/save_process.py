"""A checkpoint writer in its own process at idle CPU priority (`CHECKPOINT_WRITER = 'process'`).

Why: Orbax spends ~2-3 ms of CPU per array on a save (its asyncio loop, TensorStore specs, metadata): 250-370 ms
for a tiny model's 111 arrays, whatever their size (perf/RESULTS.md, "The floor"). On a host whose cores run the
training step (XLA:CPU) that CPU time comes out of the steps beside the save, and on a thread of the training
process it also holds the GIL that the step's dispatch needs: a save at idle priority on a thread only spread the
same excess over more steps. In a second process under `SCHED_IDLE` the writer runs only when a core is otherwise
idle and shares no GIL, so the steps around a save stay within 10% of the median (measured in perf/RESULTS.md).

What crosses: the host copy's arrays as raw bytes in one shared-memory buffer (an anonymous `memfd`, or an
unlinked temporary file, opened before the worker starts and inherited by it: nothing is left in /dev/shm if
either process dies, and after the first save no page is allocated again), their dtypes and shapes, the pickled
tree structure, and the checkpoint's JSON item. The worker computes the integrity record (array specs and
checksums, `integrity.host_partial_checksums`: bit-equal to the trainer's) from those bytes, then saves with
Orbax into the same `checkpoints/` directory with the trainer's options (`max_to_keep`, the pruned
subdirectory), so the checkpoint on disk is the one the thread writer would write; the trainer's manager then
re-reads the step list. The trainer's part of a save is one memcpy of the state and a line of JSON (its
checksums had cost the steps beside a save ~10 ms of GIL-holding CPU). Only one save is ever in flight, and the
trainer's own manager never saves while the worker does.

A stop's save (preemption, MAX_RUNTIME) does not queue behind an idle-priority save: the trainer abandons the
worker's save in flight (the worker is killed, its temporary step directory removed; the older checkpoints were
never touched) and saves in its own process at full priority. The end of training's save waits for the save in
flight instead (the steps no longer hold the cores, so the worker runs; every periodic save is kept) and is then
written at full priority in the trainer too. If the training process
dies, the worker gets SIGKILL from the kernel (`PR_SET_PDEATHSIG`), so it never writes behind a resumed run.
Single-process runs only (several processes need Orbax's barriers in the training processes).
"""

from __future__ import annotations

import base64
import json
import logging
import mmap
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


def _shared_buffer() -> int:
    """A file descriptor of an anonymous shared-memory file (Linux `memfd`; elsewhere an unlinked temporary
    file): the trainer writes a save's bytes into it, the worker inherits it and reads them."""
    if hasattr(os, "memfd_create"):
        return os.memfd_create("optiml_checkpoint_writer", 0)  # not inheritable until passed to the worker
    fd, name = tempfile.mkstemp(prefix="optiml_checkpoint_writer_")
    os.unlink(name)
    return fd


class ProcessWriter:
    """The trainer's side: starts the worker at once (its imports overlap the trainer's setup), hands it one save
    at a time (`save`, blocking the calling thread until the step is committed) and can abandon the save in
    flight (`abandon`) for a full-priority final save."""

    def __init__(self, directory: pathlib.Path, *, keep: int | None, pruned_subdir: str, integrity_key: str):
        self.directory = pathlib.Path(directory)
        self._integrity_key = integrity_key
        self._fd = _shared_buffer()
        self._map: mmap.mmap | None = None
        self._layout_cache: tuple | None = None
        self._args = [sys.executable, "-c", _BOOTSTRAP, str(self.directory),
                      "none" if keep is None else str(int(keep)), pruned_subdir, str(self._fd), str(os.getpid())]
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
                                          env=env, text=True, bufsize=1, pass_fds=(self._fd,))

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _layout(self, treedef, arrays: list) -> dict:
        """The request's tree structure and array specs, encoded once per state layout (every save of a run has
        the same one: ~1 ms of this thread's GIL time per save for a tiny model's 111 arrays, saved)."""
        specs = tuple((str(a.dtype), a.shape) for a in arrays)
        if self._layout_cache is None or self._layout_cache[0] != (treedef, specs):
            encoded = {"arrays": [[dtype, list(shape)] for dtype, shape in specs],
                       "treedef": base64.b64encode(pickle.dumps(treedef)).decode()}
            self._layout_cache = ((treedef, specs), encoded)
        return self._layout_cache[1]

    def _write_buffer(self, arrays: list) -> None:
        """The arrays' bytes, back to back, into the shared buffer (grown, never shrunk, as the state needs)."""
        import numpy as np

        size = max(1, sum(a.nbytes for a in arrays))  # an mmap cannot be empty
        if self._map is None or len(self._map) < size:
            if self._map is not None:
                self._map.close()
            os.ftruncate(self._fd, size)
            self._map = mmap.mmap(self._fd, size)
        view, offset = np.frombuffer(self._map, np.uint8), 0
        for a in arrays:
            view[offset:offset + a.nbytes] = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
            offset += a.nbytes
        del view

    def save(self, step: int, snapshot: Any, data: dict, *, checksums: bool) -> bool:
        """Save `snapshot` (a host copy) with the JSON item `data` as `step`; the worker adds the integrity record
        (array specs, and the checksums if `checksums`) under the integrity key. Returns False if the save was
        abandoned (`abandon`), True once the worker has committed it. Raises `WriterError` otherwise."""
        import jax
        import numpy as np

        leaves, treedef = jax.tree_util.tree_flatten(snapshot)
        arrays = [np.asarray(x) for x in leaves]
        request = {"step": int(step), "data": data, "integrity_key": self._integrity_key, "checksums": checksums,
                   **self._layout(treedef, arrays)}
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._start()
            self._write_buffer(arrays)  # no save in flight: the worker is not reading it
            self._in_flight, self._abandoned = int(step), False
            proc = self._proc
        try:
            return self._exchange(proc, request)
        finally:
            with self._lock:
                self._in_flight = None

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
        if proc is not None:
            try:
                proc.stdin.close()
                proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                proc.kill()
                proc.wait()
        with self._lock:
            if self._map is not None:
                self._map.close()
                self._map = None
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


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


def _read_exactly(fd: int, n: int) -> bytes:
    chunks, offset = [], 0
    while offset < n:
        chunk = os.pread(fd, min(n - offset, 1 << 30), offset)
        if not chunk:
            raise WriterError(f"the shared buffer holds {offset} of the {n} bytes of the host copy")
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _read_tree(buffer_fd: int, request: dict):
    """The host copy back from the shared buffer (read in one copy: the buffer is reused by the next save), as
    jax arrays in the trainer's tree structure."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    sizes = [int(np.prod(shape, dtype=np.int64)) * jnp.dtype(dtype).itemsize for dtype, shape in request["arrays"]]
    raw = np.frombuffer(_read_exactly(buffer_fd, sum(sizes)), np.uint8)
    leaves, offset = [], 0
    for (dtype, shape), n in zip(request["arrays"], sizes):
        leaves.append(jnp.asarray(raw[offset:offset + n].view(jnp.dtype(dtype)).reshape(shape)))
        offset += n
    return jax.tree_util.tree_unflatten(pickle.loads(base64.b64decode(request["treedef"])), leaves)


def _save_one(manager, buffer_fd: int, request: dict) -> None:
    import orbax.checkpoint as ocp

    from optiml_jax.checkpoints import integrity

    tree = _read_tree(buffer_fd, request)
    checksums = None
    if request["checksums"]:  # single process: this process's share is the whole sum
        checksums = integrity.format_checksums(integrity.host_partial_checksums(tree))
    data = {**request["data"], request["integrity_key"]: integrity.integrity_record(tree, checksums)}
    manager.reload()  # the trainer may have saved, pruned or set a step aside since the last request
    args = ocp.args.Composite(state=ocp.args.StandardSave(tree), data=ocp.args.JsonSave(data))
    manager.save(int(request["step"]), args=args, force=True)
    manager.wait_until_finished()


def main(argv: list[str]) -> None:
    directory, keep, pruned_subdir, buffer_fd, _parent_pid = argv
    import orbax.checkpoint as ocp

    options = ocp.CheckpointManagerOptions(max_to_keep=None if keep == "none" else int(keep),
                                           enable_async_checkpointing=False, create=True,
                                           cleanup_tmp_directories=False, todelete_subdir=pruned_subdir)
    manager = ocp.CheckpointManager(directory, options=options)
    for line in sys.stdin:
        request = json.loads(line)
        try:
            _save_one(manager, int(buffer_fd), request)
            reply = {"ok": True}
        except Exception as e:  # noqa: BLE001 (sent to the trainer, which raises it naming the step)
            reply = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(REPLY + json.dumps(reply) + "\n")
        sys.stdout.flush()
    manager.close()
