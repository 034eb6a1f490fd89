"""Held-out instances that are really held out: splits carved from one pool are disjoint by normalized input.

A task's evaluation instances must not reappear in its training data. Collections repeat instances (NIv2 task files
hold the same input more than once, generated data can draw the same record twice), so cutting a pool by position
alone can put one instance on both sides. Two instances are "the same" when their normalized input texts are
equal: the input a model is given (for a full-sequence task without an input, the text itself), Unicode
NFKC-folded, lowercased and with runs of whitespace collapsed. The mini-benchmark's generator and OPT-IML
Bench's pool split (`opt_iml_bench.py`) both use `normalized_input` and `carve_pool`.
"""

from __future__ import annotations

import unicodedata
from typing import Iterable, Mapping


def normalize_text(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", str(text)).casefold().split())


def normalized_input(example: Mapping) -> str:
    """The key two instances share when they are the same instance: the normalized input (target if no input)."""
    text = normalize_text(example.get("input", ""))
    return text or normalize_text(example.get("target", ""))


def carve_pool(examples: Iterable[Mapping], n_eval: int) -> tuple[list, list, int]:
    """(evaluation, rest, dropped): evaluation = the first `n_eval` instances with distinct normalized inputs (a
    later repeat of one is skipped); rest = every other instance whose input is not an evaluation input (repeats
    among the rest are kept: they are training data's own weighting); dropped = how many were left out of both."""
    evaluation, rest, keys, dropped = [], [], set(), 0
    for ex in examples:
        key = normalized_input(ex)
        if key in keys:
            dropped += 1
        elif len(evaluation) < n_eval:
            keys.add(key)
            evaluation.append(ex)
        else:
            rest.append(ex)
    return evaluation, rest, dropped
