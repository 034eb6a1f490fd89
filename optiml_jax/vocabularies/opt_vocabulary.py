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
import pathlib
from typing import Iterable, Sequence

import numpy as np
import tensorflow as tf

from optiml_jax.paths import is_url, user_path
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

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        pad_vocab_to_multiple_of: int = tokenizer_files.DEFAULT_PAD_VOCAB_TO_MULTIPLE_OF,
        literal_special_tokens: Iterable[str] = tokenizer_files.HF_OPT_LITERAL_SPECIAL_TOKENS,
    ):
        super().__init__(extra_ids=0)
        self._path = user_path(path, "TOKENIZER_DIR")  # a bucket stays a URL (optiml_jax.paths)
        self._path = self._path if is_url(self._path) else pathlib.Path(self._path).resolve()
        self._pad_vocab_to_multiple_of = pad_vocab_to_multiple_of
        self._literal_special_tokens = tuple(literal_special_tokens)
        self._load()

    def _load(self) -> None:
        vocab, merges = tokenizer_files.read_vocab_and_merges(self._path)
        self._tokenizer = tokenizer_files.build_byte_level_bpe(vocab, merges, self._literal_special_tokens)
        self._num_entries = max(vocab.values()) + 1
        self._padded_size = tokenizer_files.padded_vocab_size(self._num_entries, self._pad_vocab_to_multiple_of)

    # ----------------------------------------------------------------------------------------------- ids / sizes
    @property
    def path(self) -> pathlib.Path:
        return self._path

    @property
    def pad_vocab_to_multiple_of(self) -> int:
        return self._pad_vocab_to_multiple_of

    @property
    def literal_special_tokens(self) -> tuple[str, ...]:
        return self._literal_special_tokens

    @property
    def num_entries(self) -> int:
        """Number of ids that have a token (max id + 1): 50,265 for OPT."""
        return self._num_entries

    @property
    def tokenizer(self):
        """The underlying `tokenizers.Tokenizer` (no post-processor; adds no BOS/EOS)."""
        return self._tokenizer

    @property
    def bos_id(self) -> int:
        return tokenizer_files.BOS_ID

    @property
    def eos_id(self) -> int:
        return tokenizer_files.EOS_ID

    @property
    def pad_id(self) -> int:
        return tokenizer_files.PAD_ID

    @property
    def unk_id(self) -> int:
        return tokenizer_files.UNK_ID

    @property
    def _base_vocab_size(self) -> int:
        return self._padded_size

    # ----------------------------------------------------------------------------------------------- python ops
    def _encode(self, s: str) -> Sequence[int]:
        return self._tokenizer.encode(s, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Encodes many texts at once with the Rust tokenizer's parallel batch API (same ids as `encode`)."""
        return [e.ids for e in self._tokenizer.encode_batch(list(texts), add_special_tokens=False)]

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

    def decode_batch(self, batch: Iterable[Iterable[int]]) -> list[str]:
        """`decode` of each sequence (each cut at its first EOS, control/padding ids dropped)."""
        return [self.decode(ids) for ids in batch]

    # ----------------------------------------------------------------------------------------------- TF ops
    def _encode_strings_np(self, strings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        texts = [_as_text(s, self._path) for s in np.asarray(strings, dtype=object).reshape(-1)]
        # One text (the usual per-example map) skips the batch API's thread-pool dispatch.
        encoded = [self._encode(texts[0])] if len(texts) == 1 else self.encode_batch(texts)
        lengths = np.array([len(ids) for ids in encoded], dtype=np.int64)
        flat = np.fromiter((i for ids in encoded for i in ids), dtype=np.int32, count=int(lengths.sum()))
        return flat, lengths

    def _encode_tf(self, s: tf.Tensor) -> tf.Tensor | tf.RaggedTensor:
        """String tensor of any rank -> int32 ids: a 1-D tensor for a scalar, else a RaggedTensor of shape
        `s.shape + [None]` (like SeqIO's SentencePiece vocabulary)."""
        s = tf.convert_to_tensor(s, dtype=tf.string)
        flat, lengths = tf.numpy_function(
            self._encode_strings_np, [tf.reshape(s, [-1])], [tf.int32, tf.int64], stateful=False, name="opt_bpe_encode"
        )
        flat.set_shape([None])
        if s.shape.rank == 0:
            return flat
        lengths.set_shape([None])
        ragged = tf.RaggedTensor.from_row_lengths(flat, lengths, validate=False)
        outer_dims = tf.unstack(tf.shape(s, out_type=tf.int64))
        for dim in reversed(outer_dims[1:]):
            ragged = tf.RaggedTensor.from_uniform_row_length(ragged, dim, validate=False)
        return ragged

    def decode_tf(self, ids: tf.Tensor) -> tf.Tensor:
        """int ids of shape [..., length] -> strings of shape [...], each cut at its first EOS (SeqIO semantics)."""
        if isinstance(ids, tf.RaggedTensor):
            raise TypeError(f"{self}: decode_tf takes a dense tensor (pad with pad_id={tokenizer_files.PAD_ID})")
        ids = tf.convert_to_tensor(ids)
        if ids.shape.rank == 0:
            raise ValueError(f"{self}: decode_tf needs ids of shape [..., length], got a scalar")
        return super().decode_tf(ids)

    # ----------------------------------------------------------------------------------------------- identity
    def _settings(self) -> dict:
        return {"path": str(self._path), "pad_vocab_to_multiple_of": self._pad_vocab_to_multiple_of,
                "literal_special_tokens": self._literal_special_tokens}

    def _restore(self, settings: dict) -> None:
        self._path = pathlib.Path(settings["path"])
        self._pad_vocab_to_multiple_of = settings["pad_vocab_to_multiple_of"]
        self._literal_special_tokens = tuple(settings["literal_special_tokens"])

    def __repr__(self) -> str:
        return (
            f"OPTVocabulary({str(self._path)!r}, pad_vocab_to_multiple_of={self._pad_vocab_to_multiple_of}, "
            f"literal_special_tokens={self._literal_special_tokens!r})"
        )

    __str__ = __repr__


def _as_text(value, path: pathlib.Path) -> str:
    if isinstance(value, str):
        return value
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"OPTVocabulary({str(path)!r}): input string is not valid UTF-8: {bytes(value)[:60]!r}") from e


__all__ = ["OPTVocabulary"]
