"""Packing tokenized examples into rows of the batch contract (docs/ARCHITECTURE.md), with numpy.

Placement is best-fit decreasing: examples are taken longest first and each goes into the row whose free
space is the smallest that still holds it (ties: lowest row). Within a row, examples keep placement order.
Each example already ends with the vocabulary's eos, and its decoder input starts with the vocabulary's bos (OPT:
`</s>` = 2 for both), so every segment is a complete sequence of the model's family. A family without a bos
(Qwen2) has no token to predict an example's first token from: that token is input only and the segment is one
shorter (targets = ids[1:], as transformers' causal-LM loss shifts). Segment ids count from 1 per row, positions
restart at 0 per segment; padding is the vocabulary's pad id (OPT: 1), segment 0, weight 0. The ids come from
`optiml_jax.vocabularies.SpecialIds` (default: OPT's).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from optiml_jax.vocabularies.special_ids import SpecialIds, opt_special_ids

FEATURES = ("decoder_input_tokens", "decoder_target_tokens", "decoder_loss_weights", "decoder_segment_ids",
            "decoder_positions")


def best_fit_decreasing(lengths: Sequence[int], free: np.ndarray) -> np.ndarray:
    """Row of each item (-1: fits nowhere); `free` (per-row free space) is updated in place."""
    lengths = np.asarray(lengths, np.int64)
    rows = np.full(len(lengths), -1, np.int64)
    big = np.iinfo(np.int64).max
    for i in np.argsort(-lengths, kind="stable"):
        n = lengths[i]
        slack = np.where(free >= n, free - n, big)
        r = int(np.argmin(slack))
        if slack[r] != big:
            rows[i] = r
            free[r] -= n
    return rows


def segment_length(num_ids: int, ids: SpecialIds | None = None) -> int:
    """Positions an example of `num_ids` tokens occupies in a row: all of them, or one fewer without a bos."""
    return num_ids if (ids or opt_special_ids()).bos is not None else max(num_ids - 1, 0)


def empty_batch(num_rows: int, length: int, ids: SpecialIds | None = None) -> dict[str, np.ndarray]:
    pad = (ids or opt_special_ids()).pad
    return {
        "decoder_input_tokens": np.full((num_rows, length), pad, np.int32),
        "decoder_target_tokens": np.full((num_rows, length), pad, np.int32),
        "decoder_loss_weights": np.zeros((num_rows, length), np.float32),
        "decoder_segment_ids": np.zeros((num_rows, length), np.int32),
        "decoder_positions": np.zeros((num_rows, length), np.int32),
    }


def write_rows(examples: Sequence[tuple[np.ndarray, np.ndarray]], rows: np.ndarray, num_rows: int,
               length: int, ids: SpecialIds | None = None) -> dict[str, np.ndarray]:
    """Lays out examples (ids, weights) into their assigned rows (rows[i] == -1: skipped) with the special ids of
    `ids` (the run's vocabulary; default OPT's)."""
    ids = ids or opt_special_ids()
    batch = empty_batch(num_rows, length, ids)
    bos = ids.bos
    cursor = np.zeros(num_rows, np.int64)
    segment = np.zeros(num_rows, np.int64)
    for (tokens, w), r in zip(examples, rows):
        if r < 0:
            continue
        if bos is None:  # the first token is input only (see the module docstring)
            inputs, tokens, w = tokens[:-1], tokens[1:], w[1:]
        else:
            inputs = np.concatenate([[bos], tokens[:-1]])
        n, a = len(tokens), cursor[r]
        if n == 0:
            continue
        if a + n > length:
            raise ValueError(f"row {r} overflows: {a} + {n} > {length}")
        segment[r] += 1
        batch["decoder_target_tokens"][r, a:a + n] = tokens
        batch["decoder_input_tokens"][r, a:a + n] = inputs
        batch["decoder_loss_weights"][r, a:a + n] = w
        batch["decoder_segment_ids"][r, a:a + n] = segment[r]
        batch["decoder_positions"][r, a:a + n] = np.arange(n)
        cursor[r] = a + n
    return batch


def pack(examples: Sequence[tuple[np.ndarray, np.ndarray]], num_rows: int, length: int,
         ids: SpecialIds | None = None):
    """Best-fit-decreasing packing of all `examples` into `num_rows` rows; returns (batch, rows)."""
    rows = best_fit_decreasing([segment_length(len(t), ids) for t, _ in examples], np.full(num_rows, length, np.int64))
    return write_rows(examples, rows, num_rows, length, ids), rows


def efficiency(batch: dict[str, np.ndarray]) -> float:
    """Non-padding tokens / all tokens."""
    seg = batch["decoder_segment_ids"]
    return float((seg > 0).sum() / seg.size) if seg.size else 0.0
