"""Packing tokenized examples into rows of the batch contract (docs/ARCHITECTURE.md), with numpy.

Placement is best-fit decreasing: examples are taken longest first and each goes into the row whose free
space is the smallest that still holds it (ties: lowest row). Within a row, examples keep placement order.
Each example already ends with `</s>`, and its decoder input starts with `</s>` (OPT's BOS), so examples in a
row are separated by `</s>` and every segment is a complete OPT sequence. Segment ids count from 1 per row,
positions restart at 0 per segment; padding is token 1, segment 0, weight 0.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from optiml_jax.vocabularies.special_tokens import BOS_ID, PAD_ID

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


def empty_batch(num_rows: int, length: int) -> dict[str, np.ndarray]:
    return {
        "decoder_input_tokens": np.full((num_rows, length), PAD_ID, np.int32),
        "decoder_target_tokens": np.full((num_rows, length), PAD_ID, np.int32),
        "decoder_loss_weights": np.zeros((num_rows, length), np.float32),
        "decoder_segment_ids": np.zeros((num_rows, length), np.int32),
        "decoder_positions": np.zeros((num_rows, length), np.int32),
    }


def write_rows(examples: Sequence[tuple[np.ndarray, np.ndarray]], rows: np.ndarray, num_rows: int,
               length: int) -> dict[str, np.ndarray]:
    """Lays out examples (ids, weights) into their assigned rows (rows[i] == -1: skipped)."""
    batch = empty_batch(num_rows, length)
    cursor = np.zeros(num_rows, np.int64)
    segment = np.zeros(num_rows, np.int64)
    for (ids, w), r in zip(examples, rows):
        if r < 0:
            continue
        n, a = len(ids), cursor[r]
        if a + n > length:
            raise ValueError(f"row {r} overflows: {a} + {n} > {length}")
        segment[r] += 1
        batch["decoder_target_tokens"][r, a:a + n] = ids
        batch["decoder_input_tokens"][r, a] = BOS_ID
        batch["decoder_input_tokens"][r, a + 1:a + n] = ids[:-1]
        batch["decoder_loss_weights"][r, a:a + n] = w
        batch["decoder_segment_ids"][r, a:a + n] = segment[r]
        batch["decoder_positions"][r, a:a + n] = np.arange(n)
        cursor[r] = a + n
    return batch


def pack(examples: Sequence[tuple[np.ndarray, np.ndarray]], num_rows: int, length: int):
    """Best-fit-decreasing packing of all `examples` into `num_rows` rows; returns (batch, rows)."""
    rows = best_fit_decreasing([len(i) for i, _ in examples], np.full(num_rows, length, np.int64))
    return write_rows(examples, rows, num_rows, length), rows


def efficiency(batch: dict[str, np.ndarray]) -> float:
    """Non-padding tokens / all tokens."""
    seg = batch["decoder_segment_ids"]
    return float((seg > 0).sum() / seg.size) if seg.size else 0.0
