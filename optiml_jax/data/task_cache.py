"""Tokenize each (task, split, shard) once, in zero-shot form, and keep the token arrays.

A host holds only its shard of a split: example positions p with p % num_shards == shard_index (SeqIO's
`ShardInfo` semantics), taken from the task's capped subset (a seeded random subset of at most `cap`
examples, paper 2.1). A split smaller than the shard count is not sharded (every host holds all of it).
Arrays live in memory for the process and, with `cache_dir`, as `.npz` files keyed by the task, split,
shard, cap, format seed, vocabulary and `FORMAT_VERSION`.
"""

from __future__ import annotations

import threading
import zlib

import numpy as np

from optiml_jax.tasks.formatting import draw_delimiter, layout
from optiml_jax.data.tokenization import TaskTokens, cache_path, load_tokens, save_tokens, tokenize_pieces
from optiml_jax.tasks import registry

_MEMORY: dict[tuple, TaskTokens] = {}
_LOCK = threading.Lock()


def vocabulary_key(vocabulary) -> str:
    return str(getattr(vocabulary, "path", None) or repr(vocabulary))


def shard_positions(n: int, cap: int | None, shard_index: int, num_shards: int, task_name: str,
                    format_seed: int = 0) -> np.ndarray:
    """Raw-split positions this shard uses: a seeded subset of size min(n, cap), then every num_shards-th."""
    if cap is not None and n > cap:
        keep = np.sort(np.random.default_rng([format_seed, zlib.crc32(task_name.encode())]).permutation(n)[:cap])
    else:
        keep = np.arange(n)
    if len(keep) >= num_shards:
        keep = keep[shard_index::num_shards]
    return keep.astype(np.int64)


def task_tokens(task_name: str, split: str, *, shard_index: int = 0, num_shards: int = 1, cap: int | None = None,
                format_seed: int = 0, cache_dir: str | None = None) -> TaskTokens:
    """Zero-shot tokens of this shard of a task's split (memoized; optionally cached on disk)."""
    task = registry.get_task(task_name)
    key = (task_name, task.generation, split, shard_index, num_shards, cap, format_seed, vocabulary_key(task.vocabulary))
    with _LOCK:
        if key in _MEMORY:
            return _MEMORY[key]
    path = cache_path(cache_dir, key) if cache_dir else None
    tokens = load_tokens(path) if path else None
    if tokens is None:
        raw = registry.load_raw_examples(task_name, split)
        positions = shard_positions(len(raw), cap, shard_index, num_shards, task_name, format_seed)
        pieces = [layout(task.info, raw[p], delimiter=draw_delimiter(task_name, raw[p]["id"], format_seed))
                  for p in positions]
        tokens = TaskTokens.from_examples(tokenize_pieces(task.vocabulary, pieces), positions)
        if path:
            save_tokens(path, tokens)
    with _LOCK:
        _MEMORY[key] = tokens
    return tokens
