"""The task shards this process holds in memory: a least-recently-used set with a cap, minus what streams protect.

Why: at OPT-IML Bench scale (~2,000 tasks) the first pass over the catalog reads every task, and holding each one
once read makes the data path's memory grow with the catalog (~0.19 MiB per 500-instance NIv2 task read lazily,
its split's tokens for one read from the token cache; perf/RESULTS.md, issue 23). A shard's content is a pure
function of the task's registration (`task_cache`), so dropping one costs only a re-read when it is drawn again,
never a different batch.

The bound: the resident entries take at most max(`budget`, P) bytes, where `budget` is `RESIDENT_MIB` MiB (an entry
is one read of one task: every shard of it that the reader asked for, or its whole split) and P is the size of the
resident entries of the tasks that live streams said they need next (`protect`: the tasks of the draws of the step
being packed and of the read-ahead window; `optiml_jax.data.stream`). Eviction takes the least recently used entry
that no stream protects. Sizes are `nbytes` estimates (arrays' bytes, texts' characters plus Python's per-object
overhead: `TaskTokens.nbytes`, `LazyTaskShard.nbytes`) taken when an entry is put; a lazy shard that grows (its drawn
examples tokenized) reports each example's bytes (`grow`). A caller holding a value it got keeps that value alive
itself (a stream packing a step keeps only the examples it placed).

Reads are deduplicated: while one thread reads an entry, another asking for it waits for that read rather than
reading it a second time (the stream's read-ahead thread and the step being packed ask for the same tasks).
"""

from __future__ import annotations

import collections
import threading
from concurrent.futures import Future
from typing import Callable, Hashable

RESIDENT_MIB = 1024  # a quarter of issue 23's 4 GiB; a 500-instance NIv2 task read lazily takes ~0.2 MiB


class ResidentShards:
    """Entries keyed by hashable keys whose first element is the task name; see the module docstring."""

    def __init__(self, budget_bytes: float = RESIDENT_MIB * 2**20, sizer: Callable[[object], int] = lambda v: 0):
        self.budget = budget_bytes
        self._sizer = sizer
        self._entries: collections.OrderedDict[Hashable, object] = collections.OrderedDict()
        self._sizes: dict[Hashable, int] = {}
        self.nbytes = 0  # the resident entries' size
        self._reading: dict[Hashable, Future] = {}
        self._protected: dict[Hashable, frozenset[str]] = {}
        self._lock = threading.Lock()
        self.peak = 0  # the most entries resident at once
        self.peak_nbytes = 0
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
            value = self._entries[key] = merge(old, value) if (merge is not None and old is not None) else value
            self._entries.move_to_end(key)
            size = self._sizer(value)
            self.nbytes += size - self._sizes.get(key, 0)
            self._sizes[key] = size
            self._evict_locked()
            self.peak = max(self.peak, len(self._entries))
            self.peak_nbytes = max(self.peak_nbytes, self.nbytes)

    def grow(self, key: Hashable, value, nbytes: int) -> None:
        """Entry `key`, if it is still `value`, takes `nbytes` more (a lazy shard tokenized an example)."""
        with self._lock:
            if self._entries.get(key) is value:
                self._sizes[key] += nbytes
                self.nbytes += nbytes
                self._evict_locked()
                self.peak_nbytes = max(self.peak_nbytes, self.nbytes)

    def protected_nbytes(self) -> int:
        """The size of the resident entries that streams protect (P of the module docstring)."""
        with self._lock:
            protected = frozenset().union(*self._protected.values())
            return sum(n for k, n in self._sizes.items() if k[0] in protected)

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
            self._sizes.clear()
            self.nbytes = self.peak = self.peak_nbytes = 0

    def _evict_locked(self) -> None:
        if self.nbytes <= self.budget:
            return
        protected = frozenset().union(*self._protected.values())
        for key in [k for k in self._entries if k[0] not in protected]:  # oldest first
            if self.nbytes <= self.budget:
                break
            del self._entries[key]
            self.nbytes -= self._sizes.pop(key)
            self.evictions += 1
