"""One background thread that reads, ahead of time, the tasks the next training steps will draw.

Why: in the first pass over a 2,000-task catalog most steps draw ~150 tasks never read before, and reading them
(a task's JSON, its examples' checks, the tokenizer) made the stream only ~1.4x the trainer's consumption, against a
target of 10x (perf/RESULTS.md, issue 23). The draws of a step are known before it is packed (they are a pure
function of (mixture, seed, packing group, draw index): `TrainStream._draw`), so the stream hands this thread the
draws its next steps will make while the trainer runs the current step, which spends its time in XLA with the GIL
released.

Nothing read here changes a batch: what the thread reads is what the step would have read itself (the same shards
through `task_cache.task_shards`, the same examples through `LazyTaskShard`), and a read both ask for happens once
(`resident_shards.ResidentShards.get_or_read`). Bounded: one thread, and per stream only its latest window of draws
(a newer window supersedes the one not yet done); an error here is dropped, and raised by the step that draws the
example (with the task's name), as without read-ahead.
"""

from __future__ import annotations

import collections
import threading
from typing import Callable, Hashable


class ReadAheadThread:
    """Runs each owner's latest job on one daemon thread, oldest owner first; a newer job of an owner replaces its
    pending one. A job checks `is_current()` between reads to stop when superseded."""

    def __init__(self):
        self._jobs: collections.OrderedDict[Hashable, Callable[[], None]] = collections.OrderedDict()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._busy = False
        self.jobs_done = 0

    def submit(self, owner: Hashable, job: Callable[[], None]) -> None:
        with self._cond:
            self._jobs[owner] = job
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="optiml-read-ahead", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no job is pending or running (tests and benchmarks); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._jobs and not self._busy, timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._jobs))
                _, job = self._jobs.popitem(last=False)
                self._busy = True
            try:
                job()
            except Exception:  # noqa: BLE001 - the step that draws the example raises it (module docstring)
                pass
            finally:
                del job
                with self._cond:
                    self._busy = False
                    self.jobs_done += 1
                    self._cond.notify_all()


READ_AHEAD = ReadAheadThread()
