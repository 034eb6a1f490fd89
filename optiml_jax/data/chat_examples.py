"""Instruction examples as chat conversations (`USE_CHAT_TEMPLATE = True`): token ids and loss weights.

Why a separate path: the paper's plain format (`tokenization.py`) is `inputs ++ " " + target ++ [eos]`; with the
switch on, the same formatted text goes through the run tokenizer's chat template
(`optiml_jax.vocabularies.chat_template`): the user turn is the paper's formatted instruction and input, unchanged
(delimiter included), the assistant turn is the target, and the loss is on the assistant's tokens only (its
content and end-of-turn token as rendered). Demonstrations (MetaICL training, k-shot evaluation) are earlier
user/assistant turns: the pieces of `formatting.layout` in pairs, each block's leading separator dropped (the turns
separate them), so task-level placement keeps the definition at the start of the first user turn.

Where the text comes from: our tasks carry their raw fields, laid out by `formatting.layout` as in the plain path;
any other seqio task's `inputs` / `targets` ids are decoded back to text (the target's trailing eos and one leading
space dropped, as from our labels). Full-sequence-
loss tasks (plain text, no instruction) stay in the plain format. A leading bos the template renders is dropped
from each example: packing puts the vocabulary's bos before every segment (so the sequence the model reads is the
template's), and evaluation prompts are the template's text as is.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from optiml_jax.data.tokenization import TaskTokens
from optiml_jax.tasks.formatting import DEFAULT_SEPARATOR, Piece, draw_delimiter, fit_demonstrations, layout
from optiml_jax.vocabularies.chat_template import ChatTemplate, assistant, user
from optiml_jax.vocabularies.special_ids import SpecialIds


def turns_from_pieces(pieces: Sequence[Piece], separator: str = DEFAULT_SEPARATOR
                      ) -> tuple[list[dict], list[bool]]:
    """(messages, labelled) of laid-out pieces: (source, label) pairs -> user, assistant turns. A label piece's
    leading space (the plain format's join) and a later source's leading separator are dropped."""
    if len(pieces) % 2:
        raise ValueError(f"a chat conversation needs (source, label) piece pairs, got {len(pieces)} pieces")
    messages, labelled = [], []
    for i in range(0, len(pieces), 2):
        src, label = pieces[i], pieces[i + 1]
        text = src.text[len(separator):] if i and src.text.startswith(separator) else src.text
        messages += [user(text), assistant(label.text[1:] if label.text.startswith(" ") else label.text)]
        labelled += [src.is_label, label.is_label]
    return messages, labelled


def without_leading_bos(ids: Sequence[int], weights: Sequence[float], special_ids: SpecialIds
                        ) -> tuple[np.ndarray, np.ndarray]:
    ids, weights = np.asarray(ids, np.int32), np.asarray(weights, np.float32)
    if special_ids.bos is not None and len(ids) and ids[0] == special_ids.bos:
        return ids[1:], weights[1:]
    return ids, weights


def _decoded_turn(tokens: TaskTokens, j: int, vocabulary, eos_id: int) -> tuple[str, str]:
    inp, tgt = tokens.inputs_and_targets(j)
    if len(tgt) and tgt[-1] == eos_id:
        tgt = tgt[:-1]
    target = vocabulary.decode([int(t) for t in tgt])
    return vocabulary.decode([int(t) for t in inp]), target[1:] if target.startswith(" ") else target


def example_turns(view, tokens: TaskTokens, j: int, demo_rows: Sequence[int] = (), *,
                  separator: str = DEFAULT_SEPARATOR,
                  loss: str = "target", format_seed: int = 0) -> tuple[list[dict], list[bool]]:
    """The conversation of example j of `tokens` with the examples at `demo_rows` as earlier turns."""
    if tokens.raw is not None:
        ex = tokens.raw[j]
        demos = [tokens.raw[int(d)] for d in demo_rows]
        pieces = layout(view.info, ex, demos, delimiter=draw_delimiter(view.name, ex["id"], format_seed),
                        separator=separator, loss=loss)
        return turns_from_pieces(pieces, separator)
    vocab = view.vocabulary
    messages, labelled = [], []
    rows = [int(d) for d in demo_rows] + [j]
    for n, d in enumerate(rows):
        u, a = _decoded_turn(tokens, d, vocab, vocab.eos_id)
        messages += [user(u), assistant(a)]
        labelled += [loss == "suffix" and any(labelled), n == len(rows) - 1 or loss in ("all_targets", "suffix")]
    return messages, labelled


def chat_task_tokens(view, tokens: TaskTokens, chat: ChatTemplate, special_ids: SpecialIds) -> TaskTokens:
    """Every example of `tokens` (a task's split or shard, zero-shot) rendered as a one-turn conversation; the
    same examples in the same order (full-sequence-loss tasks: unchanged)."""
    if view.info.full_sequence_loss or len(tokens) == 0:
        return tokens
    seed = view.raw.format_seed if view.raw else 0
    conversations = [example_turns(view, tokens, j, format_seed=seed) for j in range(len(tokens))]
    encoded = [without_leading_bos(i, w, special_ids) for i, w in chat.encode_conversations(conversations)]
    starts = [int(np.argmax(w > 0)) if (w > 0).any() else len(w) for _, w in encoded]
    return TaskTokens.from_examples(encoded, tokens.indices, label_starts=starts).with_raw(tokens.raw)


def chat_demonstration_example(view, tokens: TaskTokens, j: int, demo_rows: Sequence[int], chat: ChatTemplate,
                               special_ids: SpecialIds, max_len: int, *, separator: str = DEFAULT_SEPARATOR,
                               loss: str = "target") -> tuple[np.ndarray, np.ndarray]:
    """A k-shot training example as a conversation (demonstrations as earlier turns), demonstrations dropped from
    the end until it fits `max_len`."""
    seed = view.raw.format_seed if view.raw else 0
    def build(demos):
        turns = example_turns(view, tokens, j, demos, separator=separator, loss=loss, format_seed=seed)
        return without_leading_bos(*chat.encode_conversations([turns])[0], special_ids)

    return fit_demonstrations(build, demo_rows, lambda built: len(built[0]) <= max_len)
