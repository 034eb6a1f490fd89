"""Adapters that let `seqio.Evaluator` drive an `OPTModel`, so a SeqIO task's own `metric_fns` (prediction
metrics) and score metrics run unchanged.

    evaluator = seqio.Evaluator("my_task", feature_converter=seqio.PrefixLMFeatureConverter(pack=False),
                                eval_split="validation", sequence_length={"inputs": 256, "targets": 64})
    metrics, _ = evaluator.evaluate(compute_metrics=True, step=step,
                                    predict_fn=make_predict_fn(model), score_fn=make_score_fn(model))

Both adapters read each converted example's `decoder_target_tokens` and `decoder_loss_weights` (as the
PrefixLM and decoder converters write them for an inputs+targets task): the tokens before the first weighted
position are the prompt, the weighted ones are the target. The prompt gets OPT's leading `</s>` (SeqIO's
converters shift with bos 0, which is OPT's unused `<s>`, so the shifted inputs are not used). Prediction
greedily decodes the prompt (trailing `</s>` cut, as SeqIO's decode would); scoring sums the target's log-likelihood.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
from optiml_jax.vocabularies.special_tokens import BOS_ID



def split_prompt_and_target(features: dict[str, Any], pad_id: int = 1) -> tuple[list[int], list[int]]:
    """(prompt ids with leading </s>, target ids) of one converted example."""
    targets = np.asarray(features["decoder_target_tokens"]).tolist()
    weights = np.asarray(features["decoder_loss_weights"]).tolist()
    weighted = [i for i, w in enumerate(weights) if w > 0]
    if not weighted:
        raise ValueError("converted example has no weighted target tokens (decoder_loss_weights all 0)")
    start, end = weighted[0], weighted[-1] + 1
    prompt = [t for t in targets[:start] if t not in (0, pad_id)]
    return [BOS_ID] + prompt, [int(t) for t in targets[start:end]]


def _examples(dataset) -> Iterable[tuple[int, dict]]:
    for index, features in dataset.as_numpy_iterator():
        yield int(index), features


def make_predict_fn(model, *, max_new_tokens: int | None = None):
    """A `seqio.Evaluator` predict_fn: [(index, generated token ids)] (greedy, cut at `</s>`)."""

    def predict_fn(dataset, model_feature_shapes=None):
        del model_feature_shapes
        indices, prompts = [], []
        for index, features in _examples(dataset):
            prompt, _ = split_prompt_and_target(features)
            indices.append(index)
            prompts.append(prompt)
        conts = model.generate_token_batches(prompts, max_new_tokens=max_new_tokens)
        return list(zip(indices, conts))

    return predict_fn


def make_score_fn(model):
    """A `seqio.Evaluator` score_fn: [(index, summed target log-likelihood)]; prompts shared where identical."""

    def score_fn(dataset, model_feature_shapes=None):
        del model_feature_shapes
        indices, prompts, targets = [], [], []
        for index, features in _examples(dataset):
            prompt, target = split_prompt_and_target(features)
            indices.append(index)
            prompts.append(prompt)
            targets.append(target)
        scored = model.score_token_options(prompts, [[t] for t in targets])
        return [(i, row[0][0]) for i, row in zip(indices, scored)]

    return score_fn
