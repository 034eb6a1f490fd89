"""Pieces -> (token ids, loss weights), left truncation, and the per-task token cache.

Each piece is encoded on its own and the results concatenated, then `</s>` is appended as a label token:
label tokens are exactly `encode(" " + target) + [eos]` (see `formatting.py` for why). An example longer
than the packed row is cut on the left (paper 3.2), keeping its end (target and `</s>`); such cuts are
counted by the caller.

`TaskTokens` holds a whole split tokenized once in zero-shot form (read through the task's seqio pipeline by
`task_cache`), as flat int32 arrays plus offsets, so the training stream samples (task, index) and slices
without re-tokenizing; optionally saved as `.npz` under a cache directory.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import pathlib
from typing import Sequence

import numpy as np

from optiml_jax.tasks.formatting import Piece
from optiml_jax.paths import local_only

FORMAT_VERSION = 2  # bump when formatting or tokenization changes, to invalidate disk caches


def encode_many(vocabulary, texts: Sequence[str]) -> list[list[int]]:
    """Batch encode when the vocabulary supports it (OPTVocabulary.encode_batch), else one by one."""
    if not texts:
        return []
    if hasattr(vocabulary, "encode_batch"):
        return vocabulary.encode_batch(list(texts))
    return [list(vocabulary.encode(t)) for t in texts]


def encode_target(vocabulary, target: str) -> list[int]:
    """The label tokens of a target: encode(" " + target) + [eos]."""
    return list(vocabulary.encode(" " + target)) + [vocabulary.eos_id]


def tokenize_pieces(vocabulary, examples: Sequence[Sequence[Piece]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(ids int32, loss weights float32) per example; `</s>` appended with weight 1."""
    flat = [p for pieces in examples for p in pieces]
    unique = list(dict.fromkeys(p.text for p in flat))  # short label pieces (" yes") repeat a lot
    by_text = dict(zip(unique, encode_many(vocabulary, unique)))
    ids = [by_text[p.text] for p in flat]
    out, k = [], 0
    eos = vocabulary.eos_id
    for pieces in examples:
        chunks, weights = [], []
        for p in pieces:
            chunks.append(ids[k])
            weights.append(np.full(len(ids[k]), 1.0 if p.is_label else 0.0, np.float32))
            k += 1
        chunks.append([eos])
        weights.append(np.ones(1, np.float32))
        out.append((np.concatenate(chunks).astype(np.int32), np.concatenate(weights)))
    return out


def truncate_left(ids: np.ndarray, weights: np.ndarray, max_len: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """Keeps the last `max_len` tokens; returns (ids, weights, was_truncated)."""
    if len(ids) <= max_len:
        return ids, weights, False
    return ids[-max_len:], weights[-max_len:], True


def text_nbytes(rows) -> int:
    """Approximate memory of raw rows (dicts or tuples of strings): their characters, ~60 bytes a string object and
    ~120 a container (what CPython allocates for short ASCII strings and small tuples or dicts)."""
    return sum(sum(map(len, r.values() if isinstance(r, dict) else r)) + 60 * len(r) + 120 for r in rows)


class TaskDataError(ValueError):
    """A task's dataset cannot be trained on; the message names the task, split and what is wrong."""


@dataclasses.dataclass(frozen=True)
class TaskTokens:
    """A tokenized split: example j is ids[offsets[j]:offsets[j+1]] with weights alike; its first
    `label_starts[j]` tokens are the task's `inputs` (the rest its `targets`); `indices` are the positions of
    these examples in the split (a shard holds a subset); `raw` their raw text fields, when the task has them."""

    ids: np.ndarray
    weights: np.ndarray
    offsets: np.ndarray
    indices: np.ndarray
    label_starts: np.ndarray | None = None
    raw: tuple[dict, ...] | None = None

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def example(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = self.offsets[j], self.offsets[j + 1]
        return self.ids[a:b], self.weights[a:b]

    def inputs_and_targets(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        """Example j split into its `inputs` and `targets` token ids."""
        ids, _ = self.example(j)
        s = int(self.label_starts[j]) if self.label_starts is not None else 0
        return ids[:s], ids[s:]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @functools.cached_property
    def nbytes(self) -> int:
        """Approximate memory: the arrays, and the raw texts' characters plus Python's overhead per row."""
        arrays = (self.ids, self.weights, self.offsets, self.indices, self.label_starts)
        return sum(a.nbytes for a in arrays if a is not None) + text_nbytes(self.raw or ())

    def select(self, rows: np.ndarray) -> "TaskTokens":
        """The examples at `rows` (positions within this object), in that order."""
        rows = np.asarray(rows, np.int64)
        lengths = self.offsets[rows + 1] - self.offsets[rows]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        # one gather for every token (a Python loop over examples cost most of a warm start at 2,000 tasks)
        take = np.repeat(self.offsets[rows] - offsets[:-1], lengths) + np.arange(offsets[-1], dtype=np.int64)
        starts = np.asarray(self.label_starts[rows], np.int64) if self.label_starts is not None else None
        raw = tuple(self.raw[int(j)] for j in rows) if self.raw is not None else None
        return TaskTokens(self.ids[take].astype(np.int32), self.weights[take].astype(np.float32), offsets,
                          np.asarray(self.indices[rows], np.int64), starts, raw)

    def with_raw(self, raw: tuple[dict, ...] | None) -> "TaskTokens":
        return dataclasses.replace(self, raw=raw)

    @classmethod
    def from_examples(cls, encoded: Sequence[tuple[np.ndarray, np.ndarray]], indices: np.ndarray,
                      label_starts: np.ndarray | None = None) -> "TaskTokens":
        lengths = np.array([len(i) for i, _ in encoded], np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        ids = np.concatenate([i for i, _ in encoded]) if encoded else np.zeros(0, np.int32)
        w = np.concatenate([w for _, w in encoded]) if encoded else np.zeros(0, np.float32)
        starts = None if label_starts is None else np.asarray(label_starts, np.int64)
        return cls(ids.astype(np.int32), w.astype(np.float32), offsets, np.asarray(indices, np.int64), starts)


def cache_path(cache_dir: str | os.PathLike, key: tuple) -> pathlib.Path:
    digest = hashlib.sha256(repr((FORMAT_VERSION,) + tuple(key)).encode()).hexdigest()[:20]
    return pathlib.Path(local_only(cache_dir, "the token cache dir", "the token cache (numpy .npz files)")) / \
        f"{key[0]}.{key[1]}.{digest}.npz"


def save_tokens(path: pathlib.Path, tokens: TaskTokens) -> None:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    # a name of its own: several processes or hosts may write the same entry of a shared cache at once
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{os.urandom(4).hex()}.tmp.npz")
    extra = {}
    if tokens.label_starts is not None:
        extra["label_starts"] = tokens.label_starts
    if tokens.raw is not None:
        extra["raw_json"] = np.frombuffer(json.dumps(tokens.raw).encode(), np.uint8)
    np.savez(tmp, ids=tokens.ids, weights=tokens.weights, offsets=tokens.offsets, indices=tokens.indices, **extra)
    os.replace(tmp, path)


def load_tokens(path: pathlib.Path, *, with_raw: bool = True) -> TaskTokens | None:
    """The cached split at `path` (None when absent); `with_raw=False` leaves its raw texts unread."""
    import json

    if not path.exists():
        return None
    with np.load(path) as z:
        starts = z["label_starts"] if "label_starts" in z else None
        raw = tuple(json.loads(z["raw_json"].tobytes().decode())) if with_raw and "raw_json" in z else None
        return TaskTokens(z["ids"], z["weights"], z["offsets"], z["indices"], starts, raw)
