"""Stop a run cleanly when the scheduler asks: a signal or a wall-clock budget ends the run at one step that
every process agrees on, with a checkpoint of that step, and exit code 143.

Why: pods and clusters are preemptible (TPU maintenance, spot GPUs, SLURM time limits, Kubernetes evictions send
SIGTERM with a grace period). Without this a SIGTERM loses every step since the last periodic checkpoint.

* Signals: SIGTERM, SIGINT and SIGUSR1 (SLURM's `--signal=USR1@120`) set a flag; the loop finishes the step in
  progress, saves it and raises `Preempted`. A second signal exits at once (`os._exit(143)`): whatever is on disk
  stays, and a half-written checkpoint is a tmp dir that restore ignores, so the last intact one wins.
* `MAX_RUNTIME` (T5X-style wall-clock budget, e.g. a SLURM allocation): the run stops after the last step that
  leaves time for one more step and a save (`margin_s` plus the slowest step and save seen so far), counted from
  when this module was imported (the command's start).
* Agreement: every process must save the *same* step (each writes its own shards). A signal reaches one process;
  so each process's flag is all-gathered every `check_period` steps and any process's flag stops all of them at
  that step. Where JAX's preemption service runs (`jax.distributed` on TPU), its notice
  (`multihost_utils.reached_preemption_sync_point`) counts as a signal too, so a maintenance event is handled the
  same way. (Our SIGTERM handler replaces the one that service installs: SIGTERM is ours, other notices are its.)
"""

from __future__ import annotations

import logging
import math
import os
import re
import signal
import threading
import time

import jax
import numpy as np


log = logging.getLogger(__name__)
EXIT_PREEMPTED = 143  # 128 + SIGTERM, what schedulers expect from a job that stopped on their signal
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)
PROCESS_START = time.monotonic()  # MAX_RUNTIME counts from here (imported at the command's start)


class Preempted(RuntimeError):
    """The run stopped on a signal or MAX_RUNTIME after saving a checkpoint of `step`; rerunning resumes it."""

    def __init__(self, message: str, *, step: int, reason: str):
        super().__init__(message)
        self.step, self.reason = step, reason


def parse_runtime(value) -> float | None:
    """MAX_RUNTIME as seconds: None, a number of seconds, '90m', '2h30m', '1d', or SLURM's '[D-]HH:MM:SS'."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"MAX_RUNTIME = {value!r}: must be seconds, e.g. 3600, '90m', '2h30m' or '04:00:00'")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"MAX_RUNTIME = {value!r}: must be > 0 seconds")
        return float(value)
    text = str(value).strip()
    m = re.fullmatch(r"(?:(\d+)-)?(\d+):(\d\d):(\d\d)", text)
    if m:
        d, h, mi, s = (int(x) if x else 0 for x in m.groups())
        total = ((d * 24 + h) * 60 + mi) * 60 + s
    else:
        parts = re.findall(r"(\d+(?:\.\d+)?)\s*([dhms])", text)
        if not parts or re.sub(r"\s", "", "".join(f"{n}{u}" for n, u in parts)) != re.sub(r"\s", "", text):
            raise ValueError(f"MAX_RUNTIME = {value!r}: must be seconds, e.g. 3600, '90m', '2h30m' or '04:00:00'")
        total = sum(float(n) * {"d": 86400, "h": 3600, "m": 60, "s": 1}[u] for n, u in parts)
    if total <= 0:
        raise ValueError(f"MAX_RUNTIME = {value!r}: must be > 0 seconds")
    return float(total)


class PreemptionWatch:
    """Installed around the training loop (`with PreemptionWatch(...) as watch:`); `watch.stop_reason(step)` after
    each step says whether every process stops now (None: go on). Handlers are restored on exit."""

    def __init__(self, *, max_runtime_s: float | None = None, margin_s: float = 30.0, check_period: int = 1):
        self.max_runtime_s = max_runtime_s
        self.margin_s = float(margin_s)
        self.check_period = max(int(check_period), 1)
        self.received: str | None = None  # name of the first signal
        self._previous: dict = {}
        self._slowest_step = 0.0
        self._slowest_save = 0.0
        self._last = None

    # ------------------------------------------------------------------ signals
    def __enter__(self) -> PreemptionWatch:
        if threading.current_thread() is not threading.main_thread():
            log.warning("training outside the main thread: SIGTERM/SIGINT/SIGUSR1 keep their default handling")
            return self
        for sig in SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        self._last = time.monotonic()
        return self

    def __exit__(self, *exc) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    def _handle(self, signum, frame) -> None:  # noqa: ARG002
        name = signal.Signals(signum).name
        if self.received is not None:
            os.write(2, f"{name} again: exiting now without saving; the last intact checkpoint stays in place "
                        "(rerun the same command to resume from it)\n".encode())
            os._exit(EXIT_PREEMPTED)
        self.received = name
        os.write(2, f"{name} received: finishing the current step, then saving a checkpoint and exiting "
                    f"(send it again to exit at once)\n".encode())

    # ------------------------------------------------------------------ timing
    def step_done(self) -> None:
        now = time.monotonic()
        if self._last is not None:
            self._slowest_step = max(self._slowest_step, now - self._last)
        self._last = now

    def save_took(self, seconds: float) -> None:
        self._slowest_save = max(self._slowest_save, seconds)
        self._last = time.monotonic()

    def _out_of_time(self) -> bool:
        if self.max_runtime_s is None:
            return False
        left = self.max_runtime_s - (time.monotonic() - PROCESS_START)
        return left <= self.margin_s + self._slowest_step + self._slowest_save

    # ------------------------------------------------------------------ agreement
    def stop_reason(self, step: int) -> str | None:
        """Why every process stops after `step` ('SIGTERM', 'MAX_RUNTIME', 'preemption notice'), or None."""
        self.step_done()
        local = self.received or ("MAX_RUNTIME" if self._out_of_time() else None)
        notice = _preemption_notice(step)
        if jax.process_count() == 1:
            return local or notice
        if step % self.check_period and not notice:
            return None
        from jax.experimental import multihost_utils

        codes = ("SIGTERM", "SIGINT", "SIGUSR1", "MAX_RUNTIME")
        mine = codes.index(local) + 1 if local in codes else 0
        flags = np.asarray(multihost_utils.process_allgather(np.asarray([mine], np.int32))).reshape(-1)
        if flags.any():
            return codes[int(flags[flags > 0][0]) - 1] + ("" if mine else " (on another process)")
        return notice


def _preemption_notice(step: int) -> str | None:
    """JAX's preemption service (on by default with jax.distributed): True on every host at the same step."""
    if jax.process_count() == 1:
        return None
    from jax.experimental import multihost_utils

    try:
        return "preemption notice" if multihost_utils.reached_preemption_sync_point(step) else None
    except RuntimeError:  # the service is off (jax_enable_preemption_service=False)
        return None
