"""Per-example metrics of the paper's protocol (section 4.1), as percentages (0-100).

* accuracy of rank classification: the option with the highest summed log-likelihood wins (optionally
  length-normalized: divided by the option's token count, an extra the paper does not use);
* exact match after light normalization (surrounding whitespace, trailing period, case);
* Rouge-L F1 (rouge-score's `RougeScorer(["rougeL"])`, as Super-NaturalInstructions computes it),
  the maximum over the references.
"""

from __future__ import annotations

import functools
import re
from typing import Sequence

from optiml_jax.tasks.metric_fns import exact_match, normalize_answer, rouge_l  # noqa: F401 (re-exported)

RANK_NORMALIZATIONS = ("none", "token_length", "char_length")


def rank_choice(option_logprobs: Sequence[float], option_lengths: Sequence[int] | None = None,
                normalization: str = "none") -> int:
    """Index of the winning option. `normalization`: 'none' (the paper), 'token_length' or 'char_length'
    (divide by `option_lengths`, which then must be given)."""
    if normalization not in RANK_NORMALIZATIONS:
        raise ValueError(f"rank normalization {normalization!r} is not one of {RANK_NORMALIZATIONS}")
    if not option_logprobs:
        raise ValueError("rank_choice needs at least one option")
    scores = list(option_logprobs)
    if normalization != "none":
        if option_lengths is None or len(option_lengths) != len(scores):
            raise ValueError(f"normalization {normalization!r} needs one length per option")
        scores = [s / max(int(n), 1) for s, n in zip(scores, option_lengths)]
    return max(range(len(scores)), key=lambda i: scores[i])


def extract_cot_answer(generation: str) -> str:
    """The answer of a chain-of-thought generation: the text after the last "So the answer is" (BBH's format),
    up to the end of that line, without a trailing period. Without the phrase, the first line, stripped."""
    text = generation.strip()
    idx = text.lower().rfind("answer is")
    if idx < 0:
        return text.split("\n", 1)[0].strip()
    tail = text[idx + len("answer is"):].split("\n", 1)[0].strip()
    return tail[:-1].rstrip() if tail.endswith(".") else tail


GENERATION_METRICS = {"exact_match": exact_match, "rouge_l": rouge_l}  # per example; defined with the tasks
