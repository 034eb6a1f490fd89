"""The task shards this process holds in memory: a least-recently-used set with a cap, minus what streams protect.

Why: at OPT-IML Bench scale (~2,000 tasks) the first pass over the catalog reads every task, and holding each one
once read makes the data path's memory grow with the catalog (~0.19 MiB per 500-instance NIv2 task read lazily,
its split's tokens for one read from the token cache; perf/RESULTS.md, issue 23). A shard's content is a pure
function of the task's registration (`task_cache`), so dropping one costs only a re-read when it is drawn again,
never a different batch.

The bound: at most `max(limit, protected)` entries are resident, where `limit` is `RESIDENT_TASKS` (an entry is one
read of one task: every shard of it that the reader asked for, or its whole split) and `protected` counts the
resident entries of the tasks that live streams said they need next (`protect`: the tasks of the draws of the step
being packed and of the read-ahead window; `optiml_jax.data.stream`). Eviction takes the least recently used entry
that no stream protects. The caller holding a value it got keeps that value alive itself (a stream packing a step
keeps only the examples it placed).

Reads are deduplicated: while one thread reads an entry, another asking for it waits for that read rather than
reading it a second time (the stream's read-ahead thread and the step being packed ask for the same tasks).
"""

from __future__ import annotations

import collections
import threading
from concurrent.futures import Future
from typing import Callable, Hashable

RESIDENT_TASKS = 256  # entries kept beyond the protected ones (a 500-instance NIv2 task read lazily: ~0.2 MiB)


class ResidentShards:
    """Entries keyed by hashable keys whose first element is the task name; see the module docstring."""

    def __init__(self, limit: int = RESIDENT_TASKS):
        self.limit = int(limit)
        self._entries: collections.OrderedDict[Hashable, object] = collections.OrderedDict()
        self._reading: dict[Hashable, Future] = {}
        self._protected: dict[Hashable, frozenset[str]] = {}
        self._lock = threading.Lock()
        self.peak = 0  # the most entries resident at once
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def tasks(self) -> set[str]:
        """The task names of the resident entries."""
        with self._lock:
            return {key[0] for key in self._entries}

    def peek(self, key: Hashable):
        """The resident value of `key` or None, leaving the eviction order as it is."""
        with self._lock:
            return self._entries.get(key)

    def get_or_read(self, key: Hashable, read: Callable[[], object], merge: Callable[[object, object], object] | None
                    = None):
        """The value of `key`: resident, being read by another thread (waited for), or `read()` here and kept.
        `merge(old, new)`: an entry resident with part of what is needed (`read` then reads the rest)."""
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
                return value
            pending = self._reading.get(key)
            if pending is None:
                pending = self._reading[key] = Future()
                owner = True
            else:
                owner = False
        if not owner:
            return pending.result()
        try:
            value = read()
        except BaseException as e:
            with self._lock:
                del self._reading[key]
            pending.set_exception(e)
            raise
        self.put(key, value, merge=merge)
        with self._lock:
            del self._reading[key]
        pending.set_result(value)
        return value

    def put(self, key: Hashable, value, merge: Callable[[object, object], object] | None = None) -> None:
        with self._lock:
            old = self._entries.get(key)
            self._entries[key] = merge(old, value) if (merge is not None and old is not None) else value
            self._entries.move_to_end(key)
            self._evict_locked()
            self.peak = max(self.peak, len(self._entries))

    def protect(self, owner: Hashable, task_names) -> None:
        """`owner` (a stream) needs `task_names` next: their entries are not evicted until it names others."""
        with self._lock:
            self._protected[owner] = frozenset(task_names)

    def release(self, owner: Hashable) -> None:
        with self._lock:
            self._protected.pop(owner, None)
            self._evict_locked()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.peak = 0

    def _evict_locked(self) -> None:
        if len(self._entries) <= self.limit:
            return
        protected = frozenset().union(*self._protected.values())
        for key in [k for k in self._entries if k[0] not in protected]:  # oldest first
            if len(self._entries) <= self.limit:
                break
            del self._entries[key]
            self.evictions += 1
