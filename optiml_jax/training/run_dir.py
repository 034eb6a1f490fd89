"""A training run owns its MODEL_DIR: the run lock, and the storage checks made before the first step.

Run lock: `MODEL_DIR/run.lock`, a JSON file created atomically (O_CREAT | O_EXCL) by process 0 of a run, naming
its process id, host, start time and command; a background thread refreshes its modification time every
`heartbeat_s` seconds, and the run removes it when it ends. A second trainer on the same MODEL_DIR refuses to
start (`RunLockedError` names the other run). A lock left by a run that died is stale and taken over, with a
warning, when
  * it names this host and its process no longer exists (or the pid now belongs to a younger process), or
  * it names another host and its heartbeat is older than `stale_after_s` (default 10 minutes).
Multi-host runs take the lock once (process 0) and every process learns the outcome (`jax` broadcast), so
either all processes start or all stop.

Storage checks (`check_storage`): MODEL_DIR and MODEL_DIR/checkpoints exist or can be created, a file can be
written, synced and removed in each (every process probes checkpoints/, which each writes its own shards to),
and the file system has room for at least one checkpoint (warning below room for `keep` + 1).

A MODEL_DIR on a bucket (`gs://...`, any URL `optiml_jax.paths` accepts) goes through its filesystem (epath):
object stores have no exclusive create, so there the lock is written when absent and read back (a run that
starts in the same second as another may both pass; the token read back catches most), the heartbeat rewrites
the record, and the free-space check is skipped (buckets report none).
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import shutil
import socket
import sys
import threading
import time
import uuid

from optiml_jax.checkpoints.errors import StorageError
from optiml_jax.paths import is_url, user_path
from optiml_jax.training.errors import RunLockedError

log = logging.getLogger(__name__)
LOCK_FILE = "run.lock"


def _proc_start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux /proc), to tell a reused pid apart."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """`with RunLock(model_dir):` or acquire()/release(); see the module docstring."""

    def __init__(self, model_dir: str | os.PathLike, *, stale_after_s: float = 600.0, heartbeat_s: float = 30.0):
        self.path = user_path(model_dir, "MODEL_DIR") / LOCK_FILE
        self.remote = is_url(self.path)
        self.stale_after_s, self.heartbeat_s = float(stale_after_s), float(heartbeat_s)
        self.token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.held = False

    def _record(self) -> dict:
        now = time.time()
        return {"pid": os.getpid(), "host": socket.gethostname(), "started": now,
                "started_iso": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(now)),
                "proc_start_ticks": _proc_start_ticks(os.getpid()), "command": " ".join(sys.argv),
                "token": self.token}

    def _read(self) -> dict | None:
        for _ in range(5):  # the other run may be between O_EXCL create and write
            try:
                text = self.path.read_text()
            except FileNotFoundError:
                return None
            try:
                return json.loads(text)
            except json.JSONDecodeError:
                time.sleep(0.1)
        return {"unreadable": True}

    def stale_reason(self, other: dict) -> str | None:
        """Why `other` (a lock record) is stale, or None while its run may be alive."""
        try:
            age = time.time() - _mtime(self.path)
        except FileNotFoundError:
            return "it is gone"
        if other.get("unreadable"):
            return f"it is unreadable and {age:.0f} s old" if age > self.stale_after_s else None
        if other.get("host") == socket.gethostname():
            pid = int(other.get("pid", -1))
            if not _pid_alive(pid):
                return f"its process {pid} on this host no longer exists"
            ticks = other.get("proc_start_ticks")
            if ticks is not None and _proc_start_ticks(pid) not in (None, ticks):
                return f"pid {pid} now belongs to another process"
            return None
        if age > self.stale_after_s:
            return f"its heartbeat is {age:.0f} s old (host {other.get('host')}; stale after {self.stale_after_s:.0f} s)"
        return None

    def describe(self, other: dict) -> str:
        if other.get("unreadable"):
            return f"an unreadable lock file {self.path}"
        return (f"pid {other.get('pid')} on host {other.get('host')}, started {other.get('started_iso', '?')} "
                f"({other.get('command', '?')})")

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StorageError(f"cannot create MODEL_DIR {self.path.parent}: {e.strerror or e} (errno {e.errno})") from e
        if self.remote:
            return self._acquire_remote()
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                other = self._read()
                if other is None:
                    continue  # released meanwhile
                reason = self.stale_reason(other)
                if reason is None:
                    raise RunLockedError(
                        f"MODEL_DIR {self.path.parent} is in use by another training run: {self.describe(other)}. "
                        f"Wait for it to end, use another MODEL_DIR, or delete {self.path} if that run is dead.")
                self._take_over(other, reason)
                continue
            except OSError as e:
                raise StorageError(f"cannot create the run lock {self.path}: {e.strerror} (errno {e.errno})") from e
            with os.fdopen(fd, "w") as f:
                json.dump(self._record(), f)
                f.flush()
                os.fsync(f.fileno())
            self._start_heartbeat()
            return
        raise RunLockedError(f"could not take the run lock {self.path} (another run keeps re-creating it)")

    def _start_heartbeat(self) -> None:
        self.held = True
        self._thread = threading.Thread(target=self._heartbeat, name="optiml-run-lock", daemon=True)
        self._thread.start()

    def _acquire_remote(self) -> None:
        """The lock on a bucket (module docstring): write when absent, read the token back."""
        other = self._read()
        if other is not None:
            reason = self.stale_reason(other)
            if reason is None:
                raise RunLockedError(
                    f"MODEL_DIR {self.path.parent} is in use by another training run: {self.describe(other)}. "
                    f"Wait for it to end, use another MODEL_DIR, or delete {self.path} if that run is dead.")
            log.warning("took over the stale run lock %s of %s: %s", self.path, self.describe(other), reason)
        try:
            self.path.write_text(json.dumps(self._record()))
        except OSError as e:
            raise StorageError(f"cannot write the run lock {self.path}: {e}") from e
        back = self._read() or {}
        if back.get("token") != self.token:
            raise RunLockedError(f"MODEL_DIR {self.path.parent}: another run wrote the lock {self.path} at the same "
                                 f"time ({self.describe(back)})")
        self._start_heartbeat()

    def _take_over(self, other: dict, reason: str) -> None:
        """Move a stale lock aside (atomic rename) and check it is the one judged stale before dropping it."""
        aside = self.path.with_name(f"{LOCK_FILE}.stale.{self.token}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        try:
            moved = json.loads(aside.read_text())
        except (OSError, json.JSONDecodeError):
            moved = {"unreadable": True}
        if other.get("token") is not None and moved.get("token") != other.get("token"):
            try:  # someone else took over in between: give their lock back
                os.link(aside, self.path)
            except FileExistsError:
                pass
            aside.unlink(missing_ok=True)
            return
        aside.unlink(missing_ok=True)
        log.warning("took over the stale run lock %s of %s: %s", self.path, self.describe(other), reason)

    def _heartbeat(self) -> None:
        warned = False
        while not self._stop.wait(self.heartbeat_s):
            try:
                if self.remote:  # no utime on a bucket: rewrite the record (new mtime)
                    self.path.write_text(json.dumps(self._record()))
                else:
                    os.utime(self.path)
            except OSError as e:
                if not warned:
                    log.warning("run lock %s: cannot refresh its heartbeat (%s)", self.path, e)
                    warned = True

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if not self.held:
            return
        self.held = False
        current = self._read()
        if current is not None and current.get("token") == self.token:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _mtime(path) -> float:
    """Modification time of a local file (os.stat) or of an object on a bucket (epath's stat)."""
    if is_url(path):
        return float(path.stat().mtime or 0)
    return os.stat(path).st_mtime


def probe_writable(directory: pathlib.Path, tag: str = "") -> None:
    """Create `directory` if needed, then write, sync and remove a small file in it; `StorageError` otherwise."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".write_probe.{socket.gethostname()}.{os.getpid()}{tag}"
        if is_url(probe):  # a bucket: the object is durable once the write returns
            probe.write_bytes(b"optiml_jax write probe\n")
        else:
            with open(probe, "wb") as f:
                f.write(b"optiml_jax write probe\n")
                f.flush()
                os.fsync(f.fileno())
        probe.unlink()
    except OSError as e:
        raise StorageError(f"{directory} is not writable: {e.strerror or e} (errno {e.errno}"
                           f"{', ' + str(e.filename) if e.filename else ''})") from e


def check_storage(model_dir: pathlib.Path, checkpoint_dir: pathlib.Path, *, checkpoint_bytes: int,
                  keep: int | None, process_index: int = 0) -> list[str]:
    """The checks of the module docstring; returns warnings (also logged), raises `StorageError`."""
    if process_index == 0:
        probe_writable(model_dir)
    probe_writable(checkpoint_dir, f".p{process_index}")
    warnings = []
    if is_url(checkpoint_dir):
        return warnings  # buckets report no free space (module docstring)
    try:
        free = shutil.disk_usage(checkpoint_dir).free
    except OSError:
        return warnings
    need = int(checkpoint_bytes * 1.05)
    if free < need:
        raise StorageError(f"{checkpoint_dir}: {_human(free)} free, but one checkpoint of this state needs about "
                           f"{_human(need)}; free space or use another MODEL_DIR")
    room = need * ((keep or 1) + 1)
    if free < room:
        msg = (f"{checkpoint_dir}: {_human(free)} free holds fewer than KEEP_CHECKPOINTS + 1 = {(keep or 1) + 1} "
               f"checkpoints of about {_human(need)} each")
        log.warning(msg)
        warnings.append(msg)
    return warnings
