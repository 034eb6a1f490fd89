"""`SpecialIds`: the one place a run learns its BOS, EOS, PAD ids and vocabulary size: from its vocabulary.

Why: OPT, Llama 3, Qwen2 and Mistral disagree on every special id (OPT bos = eos = 2, pad 1; Llama 3 bos 128000,
eos 128001 (+ 128009 for chat), no pad; Qwen2 no bos, eos 151643; Mistral bos 1, eos 2). Packing, evaluation
prompts, scoring, generation stop and export each used to carry OPT's literals; they now take a `SpecialIds`
read from the vocabulary of the task's output features (SeqIO's contract: `vocabulary.eos_id` etc.), so a run's
sequences are the ones its tokenizer's model was trained on.

Rules, the same as `transformers` and Tunix:
  * `bos`: the vocabulary's `bos_id`, or None (a family without one, e.g. Qwen2). With a bos, every sequence and
    every packed segment starts with it (decoder input = [bos] + targets[:-1]); without one, a sequence's first
    token is input only (nothing predicts it) and the segment is one shorter.
  * `eos`: one or several stop ids; the first is the one appended to examples (`vocabulary.eos_id`), all of them
    stop generation (Llama 3 instruct stops on `<|eot_id|>` too: `generation_config.json`'s list).
  * `pad`: the vocabulary's pad token, else (documented fallback, as transformers' generation and Tunix do) the
    first eos id. Padding is never attended to (segment 0), so its value only has to be a valid id.
  * `vocab_size`: the vocabulary's id count (`vocabulary.vocab_size`), which the model's embedding must cover.

Pure Python: importable without TensorFlow, SeqIO or JAX (models and kernels may use it).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable

from optiml_jax.vocabularies import special_tokens


@dataclasses.dataclass(frozen=True)
class SpecialIds:
    """BOS (or None), EOS ids (first = appended to examples; all stop generation), PAD, vocabulary size."""

    bos: int | None
    eos: tuple[int, ...]
    pad: int
    vocab_size: int | None = None
    pad_from_eos: bool = False  # True when the tokenizer has no pad token and `pad` is the eos fallback

    def __post_init__(self):
        if not self.eos:
            raise ValueError("SpecialIds needs at least one eos id")
        object.__setattr__(self, "eos", tuple(int(e) for e in self.eos))
        if self.bos is not None:
            object.__setattr__(self, "bos", int(self.bos))
        object.__setattr__(self, "pad", int(self.pad))
        ids = ([self.bos] if self.bos is not None else []) + list(self.eos) + [self.pad]
        if any(i < 0 for i in ids):
            raise ValueError(f"special ids must be >= 0: {self}")
        if self.vocab_size is not None and max(ids) >= self.vocab_size:
            raise ValueError(f"special id {max(ids)} is outside the vocabulary of {self.vocab_size} ids")

    @property
    def eos_id(self) -> int:
        """The id appended to every example (SeqIO's `eos_id`)."""
        return self.eos[0]

    @property
    def prompt_prefix(self) -> list[int]:
        """What a prompt starts with: [bos], or nothing for a family without one."""
        return [] if self.bos is None else [self.bos]

    def with_stop_ids(self, extra: Iterable[int]) -> "SpecialIds":
        """The same ids with more generation stop ids (e.g. from `generation_config.json`), order kept."""
        eos = list(self.eos)
        for e in extra:
            if int(e) not in eos:
                eos.append(int(e))
        return dataclasses.replace(self, eos=tuple(eos))

    def to_json(self) -> dict[str, Any]:
        return {"bos": self.bos, "eos": list(self.eos), "pad": self.pad, "vocab_size": self.vocab_size,
                "pad_from_eos": self.pad_from_eos}


def opt_special_ids(vocab_size: int | None = None) -> SpecialIds:
    """OPT's ids (bos = eos = `</s>` = 2, pad 1): what an `OPTVocabulary` gives (`special_tokens.py`)."""
    return SpecialIds(special_tokens.BOS_ID, (special_tokens.EOS_ID,), special_tokens.PAD_ID, vocab_size)


def _id(vocabulary: Any, name: str) -> int | None:
    """`vocabulary.<name>` or None: seqio's base `Vocabulary.bos_id` raises NotImplementedError, SentencePiece
    reports a missing id as -1."""
    try:
        value = getattr(vocabulary, name, None)
    except NotImplementedError:
        return None
    return None if value is None or int(value) < 0 else int(value)


def _explicit_pad(vocabulary: Any) -> int | None:
    """The tokenizer's own pad token, when it has one (HFTokenizerVocabulary falls back to eos itself)."""
    special = getattr(vocabulary, "special_tokens", None)
    if isinstance(special, dict) and hasattr(vocabulary, "tokenizer"):
        text = special.get("pad_token")
        return None if text is None else vocabulary.tokenizer.token_to_id(text)
    return _id(vocabulary, "pad_id")


def special_ids_of(vocabulary: Any, *, stop_ids: Iterable[int] = ()) -> SpecialIds:
    """A vocabulary's special ids (SeqIO attribute names: `bos_id`, `eos_id`, `pad_id`, `vocab_size`).

    `stop_ids`: more ids that end generation (a model's `generation_config.json`). A vocabulary without an eos id
    cannot end an example and is refused, naming it.
    """
    eos = _id(vocabulary, "eos_id")
    if eos is None:
        raise ValueError(f"{vocabulary!r} has no eos_id: examples could not be ended (give the tokenizer an "
                         "eos_token in tokenizer_config.json)")
    bos = _id(vocabulary, "bos_id")
    pad = _explicit_pad(vocabulary)
    override = getattr(vocabulary, "_pad_override", None)  # HFTokenizerVocabulary(pad_id=...)
    if override is not None:
        pad = override
    size = getattr(vocabulary, "vocab_size", None)
    ids = SpecialIds(bos, (eos,), eos if pad is None else pad, int(size) if size is not None else None,
                     pad_from_eos=pad is None)
    return ids.with_stop_ids(stop_ids)


def special_ids_of_config(config: Any) -> SpecialIds:
    """A model config's ids (`bos_token_id`, `eos_token_id` (one or several), `pad_token_id`, `vocab_size`): the
    fallback for a model used without a vocabulary (token-level evaluation of a bare checkpoint)."""
    eos = config.eos_token_id
    eos = tuple(eos) if isinstance(eos, (tuple, list)) else ((eos,) if eos is not None else ())
    if not eos:
        raise ValueError(f"{type(config).__name__} has no eos_token_id: pass a vocabulary")
    pad = config.pad_token_id
    return SpecialIds(config.bos_token_id, eos, eos[0] if pad is None else pad, config.vocab_size,
                      pad_from_eos=pad is None)
