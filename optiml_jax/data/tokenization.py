"""Pieces -> (token ids, loss weights), left truncation, and the per-task token cache.

Each piece is encoded on its own and the results concatenated, then `</s>` is appended as a label token:
label tokens are exactly `encode(" " + target) + [eos]` (see `formatting.py` for why). An example longer
than the packed row is cut on the left (paper 3.2), keeping its end (target and `</s>`); such cuts are
counted by the caller.

`TaskTokens` holds a whole split tokenized once in zero-shot form, as flat int32 arrays plus offsets, so the
training stream samples (task, index) and slices without re-tokenizing. It is kept in memory per
(task, split, format seed, shard) and optionally saved as `.npz` under a cache directory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
from typing import Sequence

import numpy as np

from optiml_jax.tasks.formatting import Piece

FORMAT_VERSION = 1  # bump when formatting or tokenization changes, to invalidate disk caches


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


@dataclasses.dataclass(frozen=True)
class TaskTokens:
    """A tokenized split: example j is ids[offsets[j]:offsets[j+1]] with weights alike; `indices` are the
    positions of these examples in the raw split (a shard holds a subset)."""

    ids: np.ndarray
    weights: np.ndarray
    offsets: np.ndarray
    indices: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def example(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = self.offsets[j], self.offsets[j + 1]
        return self.ids[a:b], self.weights[a:b]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @classmethod
    def from_examples(cls, encoded: Sequence[tuple[np.ndarray, np.ndarray]], indices: np.ndarray) -> "TaskTokens":
        lengths = np.array([len(i) for i, _ in encoded], np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        ids = np.concatenate([i for i, _ in encoded]) if encoded else np.zeros(0, np.int32)
        w = np.concatenate([w for _, w in encoded]) if encoded else np.zeros(0, np.float32)
        return cls(ids.astype(np.int32), w.astype(np.float32), offsets, np.asarray(indices, np.int64))


def cache_path(cache_dir: str | os.PathLike, key: tuple) -> pathlib.Path:
    digest = hashlib.sha256(repr((FORMAT_VERSION,) + tuple(key)).encode()).hexdigest()[:20]
    return pathlib.Path(cache_dir) / f"{key[0]}.{key[1]}.{digest}.npz"


def save_tokens(path: pathlib.Path, tokens: TaskTokens) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, ids=tokens.ids, weights=tokens.weights, offsets=tokens.offsets, indices=tokens.indices)
    os.replace(tmp, path)


def load_tokens(path: pathlib.Path) -> TaskTokens | None:
    if not path.exists():
        return None
    with np.load(path) as z:
        return TaskTokens(z["ids"], z["weights"], z["offsets"], z["indices"])
