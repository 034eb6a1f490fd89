"""`OPTVocabulary`: OPT's byte-level BPE as a `seqio.Vocabulary`, with OPT's ids.

Why a subclass rather than SeqIO's own vocabularies: SeqIO ships SentencePiece/byte vocabularies whose conventions
are pad=0, eos=1. OPT (fairseq dictionary order) has `<s>`=0, `<pad>`=1, `</s>`=2, `<unk>`=3, so every id property
SeqIO reads (`pad_id`, `eos_id`, `unk_id`, `bos_id`) is overridden here. What SeqIO's base class still does, and that
is correct with these overrides:
  * `decode`/`decode_tf` cut at the first `eos_id` (2) and map ids >= `_base_vocab_size` to `unk_id` (3);
    `decode_tf` fills positions after EOS with `pad_id` (1). `_decode` then drops the control tokens 0..3 and the
    embedding-padding ids (no token), so decoded text has no `</s>`/`<pad>` in it.
  * `seqio.preprocessors.tokenize(..., with_eos=True)` appends `eos_id` = 2.
What SeqIO does *not* take from a vocabulary (the data pipeline must handle it): its feature converters and
`trim_and_pad_dataset` pad with 0 and treat 0 as padding, and shift targets right with `bos_id=0` unless told.

TF ops run the Rust tokenizer through `tf.numpy_function`, so `encode_tf`/`decode_tf` work inside
`tf.data.Dataset.map` (and SeqIO tasks) in the process that built the pipeline; such graphs cannot be serialized
(no SavedModel export of the tokenizer), which SeqIO pipelines never need.
"""

from __future__ import annotations

import os
from typing import Iterable

import tensorflow as tf

from optiml_jax.vocabularies import tokenizer_files
from optiml_jax.vocabularies.file_vocabulary import FileVocabulary


class OPTVocabulary(FileVocabulary):
    """OPT's tokenizer (byte-level BPE read from `path`) for SeqIO tasks and mixtures.

    Args:
      path: directory with `vocab.json` + `merges.txt`, or `tokenizer.json`. Read (and validated) at construction:
        a missing or broken file raises `OPTVocabularyError` naming the directory and the file.
      pad_vocab_to_multiple_of: `vocab_size` is the number of token entries rounded up to this multiple (OPT: 8,
        50,265 -> 50,272, the model's embedding rows). 1 disables padding.
      literal_special_tokens: tokens whose literal text in the input is encoded as their id. The default,
        ("</s>", "<pad>"), reproduces Hugging Face's OPT tokenizer (`GPT2Tokenizer` with OPT's special tokens,
        `add_special_tokens=False`): "a</s>b" -> [a, 2, b]. Pass () to BPE every text as plain text (then "</s>"
        in data is three ordinary tokens and decode(encode(text)) == text for every text).

    Ids: `pad_id`=1, `eos_id`=2, `unk_id`=3, `bos_id`=2 (OPT starts every sequence with `</s>`; `<s>`=0 exists in
    the vocabulary but OPT never uses it). Encoding never adds BOS/EOS.

    Equality (SeqIO checks that all tasks of a mixture share a vocabulary) and hashing use the resolved path,
    the padding multiple and the literal special tokens. Pickling stores those and re-reads the files on load.
    """

    _TF_DECODE_NAME = "opt_bpe_decode"
    _TF_ENCODE_NAME = "opt_bpe_encode"

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        pad_vocab_to_multiple_of: int = tokenizer_files.DEFAULT_PAD_VOCAB_TO_MULTIPLE_OF,
        literal_special_tokens: Iterable[str] = tokenizer_files.HF_OPT_LITERAL_SPECIAL_TOKENS,
    ):
        self._literal_special_tokens = tuple(literal_special_tokens)
        super().__init__(path, pad_vocab_to_multiple_of)

    def _load(self) -> None:
        vocab, merges = tokenizer_files.read_vocab_and_merges(self._path)
        self._tokenizer = tokenizer_files.build_byte_level_bpe(vocab, merges, self._literal_special_tokens)
        self._num_entries = max(vocab.values()) + 1
        self._padded_size = tokenizer_files.padded_vocab_size(self._num_entries, self._pad_vocab_to_multiple_of)

    # ----------------------------------------------------------------------------------------------- ids / sizes
    # OPT's fixed ids (fairseq dictionary order), as class constants: they override seqio's id properties.
    bos_id = tokenizer_files.BOS_ID
    eos_id = tokenizer_files.EOS_ID
    pad_id = tokenizer_files.PAD_ID
    unk_id = tokenizer_files.UNK_ID

    @property
    def literal_special_tokens(self) -> tuple[str, ...]:
        return self._literal_special_tokens

    @property
    def num_entries(self) -> int:
        """Number of ids that have a token (max id + 1): 50,265 for OPT."""
        return self._num_entries

    # ----------------------------------------------------------------------------------------------- python ops
    def _tokens_to_text_ids(self, ids: Iterable[int]) -> list[int]:
        kept = []
        for i in ids:
            i = int(i)
            if i < 0:
                raise ValueError(f"{self}: cannot decode negative token id {i}")
            if i >= len(tokenizer_files.SPECIAL_TOKENS) and i < self._num_entries:
                kept.append(i)
        return kept

    def _decode(self, ids: Iterable[int]) -> str:
        return self._tokenizer.decode(self._tokens_to_text_ids(ids), skip_special_tokens=False)

    # ----------------------------------------------------------------------------------------------- TF ops
    def decode_tf(self, ids: tf.Tensor) -> tf.Tensor:
        """int ids of shape [..., length] -> strings of shape [...], each cut at its first EOS (SeqIO semantics)."""
        if isinstance(ids, tf.RaggedTensor):
            raise TypeError(f"{self}: decode_tf takes a dense tensor (pad with pad_id={tokenizer_files.PAD_ID})")
        ids = tf.convert_to_tensor(ids)
        if ids.shape.rank == 0:
            raise ValueError(f"{self}: decode_tf needs ids of shape [..., length], got a scalar")
        return super().decode_tf(ids)

    # ----------------------------------------------------------------------------------------------- identity
    def _options(self) -> dict:
        return {"literal_special_tokens": self._literal_special_tokens}

    def _set_options(self, settings: dict) -> None:
        self._literal_special_tokens = tuple(settings["literal_special_tokens"])

    def __repr__(self) -> str:
        return (
            f"OPTVocabulary({str(self._path)!r}, pad_vocab_to_multiple_of={self._pad_vocab_to_multiple_of}, "
            f"literal_special_tokens={self._literal_special_tokens!r})"
        )

    __str__ = __repr__


__all__ = ["OPTVocabulary"]
