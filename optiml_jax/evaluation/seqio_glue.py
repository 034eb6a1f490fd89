"""Adapters that let `seqio.Evaluator` drive an `DecoderOnlyModel`, so a SeqIO task's own `metric_fns` (prediction,
prediction-with-aux and score metrics) run unchanged.

    evaluator = seqio.Evaluator("my_task", feature_converter=seqio.PrefixLMFeatureConverter(pack=False),
                                eval_split="validation", sequence_length={"inputs": 256, "targets": 64})
    metrics, _ = evaluator.evaluate(compute_metrics=True, step=step, predict_fn=make_predict_fn(model),
                                    score_fn=make_score_fn(model),
                                    predict_with_aux_fn=make_predict_with_aux_fn(model))

(`optiml_jax.evaluation.seqio_eval` builds the Evaluator, its loggers and the converter for you.)

Both adapters read each converted example's `decoder_target_tokens` and `decoder_loss_weights` (as the
PrefixLM converter writes them for an inputs+targets task, with `loss_on_targets_only`; the decoder converter
for a targets-only task): the tokens before the first weighted position are the prompt, the weighted ones are
the target. The prompt gets the vocabulary's bos (OPT: `</s>`; none for a family without one; SeqIO's converters
shift with 0, which is OPT's unused `<s>`, so the shifted inputs are not used) and is left-truncated so that the
continuation fits the model. Ids are the model's `special_ids` (its vocabulary's).

Prediction greedily decodes the prompt. seqio.Evaluator stacks the per-example outputs with `np.array`, so every
prediction is returned at one width: the continuation (cut before the stop id) right-padded with the pad id
(OPT: `<pad>` = 1), which the vocabulary's `decode` drops (or cuts at, where pad falls back to eos). Scoring sums the target's log-likelihood; prediction-with-aux adds T5X's
`aux["scores"]`, the summed log-likelihood of each decoded continuation (with its `</s>` when one was emitted).

With a chat template (`USE_CHAT_TEMPLATE`, `DecoderOnlyModel.chat_template`) the prompt is decoded to text and rendered as
the template's user turn followed by its generation prompt, and a scored target as the assistant's turn (its text
and end-of-turn token), as training renders them (`chat_turns`); zero-shot only (k-shot builders work in ids).

k-shot: every adapter takes `kshot_prompts(dataset) -> builder or None`, the k-shot prompt builder of the task
whose converted dataset seqio hands over (`seqio_kshot.KShotPrompts`: `builder(index, zero_shot_prompt, room)`,
demonstrations laid out task-level or instance-level and dropped from the end until the prompt fits `room`).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import numpy as np

from optiml_jax.vocabularies.special_ids import SpecialIds


def split_prompt_and_target(features: dict[str, Any], special_ids: SpecialIds) -> tuple[list[int], list[int]]:
    """(prompt ids with the leading bos, if the family has one; target ids) of one converted example. An explicit
    pad id before the target is dropped (SeqIO's own 0-padding lies after the target, so 0, a real token in
    Llama's vocabulary, is kept)."""
    targets = np.asarray(features["decoder_target_tokens"]).tolist()
    weights = np.asarray(features["decoder_loss_weights"]).tolist()
    weighted = [i for i, w in enumerate(weights) if w > 0]
    if not weighted:
        raise ValueError("converted example has no weighted target tokens (decoder_loss_weights all 0)")
    start, end = weighted[0], weighted[-1] + 1
    pad = None if special_ids.pad_from_eos else special_ids.pad
    prompt = [t for t in targets[:start] if t != pad]
    return special_ids.prompt_prefix + prompt, [int(t) for t in targets[start:end]]


def chat_turns(model, prompt: Sequence[int], target: Sequence[int] | None = None
               ) -> tuple[list[int], list[int] | None]:
    """`USE_CHAT_TEMPLATE`: (prompt ids of the template's user turn + generation prompt, target ids of the assistant's
    turn) of a plain (prompt with its bos, target with its eos) pair; the texts are the vocabulary's decoding."""
    from optiml_jax.vocabularies.chat_template import user

    chat, vocab, ids = model.chat_template, model.vocabulary, model.special_ids
    body = [int(t) for t in prompt[len(ids.prompt_prefix):]]
    chat_prompt = chat.encode_text(chat.prompt_text([user(vocab.decode(body))]))
    if target is None:
        return chat_prompt, None
    target = [int(t) for t in target]
    if target and target[-1] in ids.eos:
        target = target[:-1]
    text = vocab.decode(target)
    text = text[1:] if text.startswith(" ") else text  # the plain format's " " + target, as training drops it
    return chat_prompt, chat.encode_text(chat.assistant_turn_text(text))


def _split(features: dict[str, Any], model) -> tuple[list[int], list[int]]:
    prompt, target = split_prompt_and_target(features, model.special_ids)
    if getattr(model, "chat_template", None) is not None:
        return chat_turns(model, prompt, target)
    return prompt, target


def pad_ragged(rows: Sequence[Sequence[int]], pad_id: int, width: int | None = None) -> list[list[int]]:
    """Token lists of different lengths -> lists of one width (right-padded), so `np.array(rows)` is 2-D."""
    width = max([len(r) for r in rows], default=0) if width is None else width
    too_long = [i for i, r in enumerate(rows) if len(r) > width]
    if too_long:
        raise ValueError(f"rows {too_long[:5]} are longer than width={width}")
    return [[int(t) for t in r] + [pad_id] * (width - len(r)) for r in rows]


def _examples(dataset) -> Iterable[tuple[int, dict]]:
    for index, features in dataset.as_numpy_iterator():
        yield int(index), features


def _fit(prompt: list[int], reserve: int, max_positions: int) -> list[int]:
    """Left-truncate (as `DecoderOnlyModel.encode_prompt` does) so that `reserve` more tokens fit the model."""
    room = max_positions - reserve
    if room < 1:
        raise ValueError(f"{reserve} continuation/target tokens leave no room for a prompt in "
                         f"max_position_embeddings={max_positions}")
    return prompt if len(prompt) <= room else prompt[len(prompt) - room:]


# dataset -> None (zero-shot) or builder(index, zero-shot prompt, room) -> k-shot prompt
KShotPromptsFor = Callable[[Any], Callable[[int, Sequence[int], int], list[int]] | None]


def _prompt(model, index: int, prompt: list[int], reserve: int, builder) -> list[int]:
    room = model.config.max_position_embeddings - reserve
    if builder is not None:
        prompt = builder(index, prompt, room)
    return _fit(prompt, reserve, model.config.max_position_embeddings)


def _prompts(model, dataset, reserve: int, kshot_prompts: KShotPromptsFor | None = None
             ) -> tuple[list[int], list[list[int]]]:
    builder = kshot_prompts(dataset) if kshot_prompts is not None else None
    indices, prompts = [], []
    for index, features in _examples(dataset):
        prompt, _ = _split(features, model)
        indices.append(index)
        prompts.append(_prompt(model, index, prompt, reserve, builder))
    return indices, prompts


def _generate(model, dataset, max_new_tokens: int | None, kshot_prompts: KShotPromptsFor | None = None):
    max_new = int(max_new_tokens or model.max_new_tokens)
    indices, prompts = _prompts(model, dataset, reserve=max_new, kshot_prompts=kshot_prompts)
    conts = model.generate_token_batches(prompts, max_new_tokens=max_new)
    return indices, prompts, conts, max_new


def make_predict_fn(model, *, max_new_tokens: int | None = None, kshot_prompts: KShotPromptsFor | None = None):
    """A `seqio.Evaluator` predict_fn: [(index, generated token ids)], greedy, cut before `</s>`, all rows
    padded with `<pad>` to the longest continuation (seqio stacks them with np.array)."""

    def predict_fn(dataset, model_feature_shapes=None):
        del model_feature_shapes
        indices, _, conts, _ = _generate(model, dataset, max_new_tokens, kshot_prompts)
        return list(zip(indices, pad_ragged(conts, model.special_ids.pad)))

    return predict_fn


def make_predict_with_aux_fn(model, *, max_new_tokens: int | None = None,
                             kshot_prompts: KShotPromptsFor | None = None):
    """A `seqio.Evaluator` predict_with_aux_fn: ([(index, tokens)] as `make_predict_fn`, {"scores": [...]}),
    `scores` being each continuation's summed log-likelihood under the model (T5X's decoding score)."""

    def predict_with_aux_fn(dataset, model_feature_shapes=None):
        del model_feature_shapes
        indices, prompts, conts, max_new = _generate(model, dataset, max_new_tokens, kshot_prompts)
        # A continuation shorter than the limit stopped at a stop id: that token is part of what was decoded.
        # (With several stop ids the one emitted is not kept by the cut; the first, the example eos, is scored.)
        decoded = [list(c) + [model.special_ids.eos_id] if len(c) < max_new else list(c) for c in conts]
        scored = model.score_token_options(prompts, [[d] for d in decoded])
        scores = [float(row[0][0]) for row in scored]
        return list(zip(indices, pad_ragged(conts, model.special_ids.pad))), {"scores": scores}

    return predict_with_aux_fn


def make_score_fn(model, *, kshot_prompts: KShotPromptsFor | None = None):
    """A `seqio.Evaluator` score_fn: [(index, summed target log-likelihood)]; prompts shared where identical."""

    def score_fn(dataset, model_feature_shapes=None):
        del model_feature_shapes
        builder = kshot_prompts(dataset) if kshot_prompts is not None else None
        indices, prompts, targets = [], [], []
        for index, features in _examples(dataset):
            prompt, target = _split(features, model)
            indices.append(index)
            prompts.append(_prompt(model, index, prompt, len(target), builder))
            targets.append(target)
        scored = model.score_token_options(prompts, [[t] for t in targets])
        return [(i, float(row[0][0])) for i, row in zip(indices, scored)]

    return score_fn
