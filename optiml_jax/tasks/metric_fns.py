"""How a task's answers are scored: per-example text metrics, and the same as seqio `metric_fns`.

`exact_match` and `rouge_l` score one prediction against its references (x100); the evaluation suites use them
per example. `seqio_metric_fn(metric)` wraps one as a seqio predict metric, `(targets, predictions) -> {name:
mean}`, which every task we register carries (`register_instruction_task`), so seqio.Evaluator and
`python -m optiml_jax.eval --gin.MIXTURE_OR_TASK_NAME=...` score our tasks as they score a user's. For an
"accuracy" (classification) task the seqio metric is exact match of the generated option; the suites score such
tasks by rank classification instead (`optiml_jax.evaluation.evaluator`).
"""

from __future__ import annotations

import functools
import re
from typing import Callable, Sequence


def normalize_answer(text: str) -> str:
    """Whitespace-collapsed, lower-cased, without a trailing period: what exact match compares."""
    text = re.sub(r"\s+", " ", text.strip()).lower()
    return text[:-1].rstrip() if text.endswith(".") else text


def exact_match(prediction: str, references: Sequence[str]) -> float:
    """100 when the normalized prediction equals a normalized reference, else 0."""
    if not references:
        raise ValueError("exact_match needs at least one reference")
    pred = normalize_answer(prediction)
    return 100.0 if any(pred == normalize_answer(r) for r in references) else 0.0


@functools.lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(prediction: str, references: Sequence[str]) -> float:
    """Rouge-L F1 (x100), best over references."""
    if not references:
        raise ValueError("rouge_l needs at least one reference")
    scorer = _rouge_scorer()
    return 100.0 * max(scorer.score(r, prediction)["rougeL"].fmeasure for r in references)


def seqio_metric_fn(metric: str) -> Callable[[Sequence[str], Sequence[str]], dict[str, float]]:
    """A seqio predict metric_fn for one of `optiml_jax.tasks.metadata.METRICS`."""
    per_example = rouge_l if metric == "rouge_l" else exact_match

    def metric_fn(targets: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
        if not targets:
            return {metric: 0.0}
        scores = [per_example(str(p), [str(t).strip()]) for t, p in zip(targets, predictions)]
        return {metric: sum(scores) / len(scores)}

    metric_fn.__name__ = f"{metric}_metric"
    return metric_fn
