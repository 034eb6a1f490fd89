"""What every SeqIO vocabulary read from tokenizer files needs beyond its ids, written once.

- Equality and hashing by what it was built from (the files and the options): SeqIO compares the vocabularies
  of a mixture's tasks, and caches key on them.
- Pickling that re-reads the files instead of carrying a `tokenizers` object across processes (tf.data
  workers, `tasks cache --workers`), so a vocabulary is cheap to send and never stale.
- TF encoding and decoding through the Rust tokenizer (`tf.numpy_function`): texts in one batch call, ids one row
  at a time.
- The directory (local, resolved, or a bucket URL), the padding of the id count and the Python ops of a
  `tokenizers.Tokenizer` without special tokens added.
A subclass gives `_options()` (its own constructor state beyond the path and the padding multiple, a dict of
hashable values), `_set_options(settings)`, `_load()` (read the files: sets `_tokenizer` and `_padded_size`) and
`_decode(ids)`.
"""

from __future__ import annotations

import os
import pathlib
from typing import Iterable, Sequence

import numpy as np
import seqio
import tensorflow as tf

from optiml_jax.paths import is_url, user_path


class FileVocabulary(seqio.Vocabulary):
    _TF_DECODE_NAME = "file_vocabulary_decode"
    _TF_ENCODE_NAME = "file_vocabulary_encode"

    def __init__(self, path: str | os.PathLike, pad_vocab_to_multiple_of: int):
        """Sets the path and padding, then reads the files (`_load`): a subclass sets its options first."""
        super().__init__(extra_ids=0)
        self._path = user_path(path, "TOKENIZER_DIR")  # a bucket stays a URL (optiml_jax.paths)
        self._path = self._path if is_url(self._path) else pathlib.Path(self._path).resolve()
        self._pad_vocab_to_multiple_of = pad_vocab_to_multiple_of
        self._load()

    def _options(self) -> dict:
        raise NotImplementedError

    def _set_options(self, settings: dict) -> None:
        raise NotImplementedError

    def _load(self) -> None:
        raise NotImplementedError

    def _settings(self) -> dict:
        return {"path": str(self._path), "pad_vocab_to_multiple_of": self._pad_vocab_to_multiple_of,
                **self._options()}

    def _restore(self, settings: dict) -> None:
        self._path = pathlib.Path(settings["path"])
        self._pad_vocab_to_multiple_of = settings["pad_vocab_to_multiple_of"]
        self._set_options(settings)

    @property
    def path(self) -> pathlib.Path:
        return self._path

    @property
    def pad_vocab_to_multiple_of(self) -> int:
        return self._pad_vocab_to_multiple_of

    @property
    def tokenizer(self):
        """The underlying `tokenizers.Tokenizer` (encoding adds no special tokens)."""
        return self._tokenizer

    @property
    def _base_vocab_size(self) -> int:
        return self._padded_size

    def _encode(self, s: str) -> Sequence[int]:
        return self._tokenizer.encode(s, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Encodes many texts at once with the Rust tokenizer's parallel batch API (same ids as `encode`)."""
        return [e.ids for e in self._tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def decode_batch(self, batch: Iterable[Iterable[int]]) -> list[str]:
        """`decode` of each sequence (each cut at its first EOS)."""
        return [self.decode(ids) for ids in batch]

    def _text(self, value) -> str:
        if isinstance(value, str):
            return value
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{type(self).__name__}({str(self._path)!r}): input string is not valid UTF-8: "
                             f"{bytes(value)[:60]!r}") from e

    def _encode_strings_np(self, strings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        texts = [self._text(s) for s in np.asarray(strings, dtype=object).reshape(-1)]
        # One text (the usual per-example map) skips the batch API's thread-pool dispatch.
        encoded = [list(self._encode(texts[0]))] if len(texts) == 1 else self.encode_batch(texts)
        lengths = np.array([len(ids) for ids in encoded], dtype=np.int64)
        flat = np.fromiter((i for ids in encoded for i in ids), dtype=np.int32, count=int(lengths.sum()))
        return flat, lengths

    def _encode_tf(self, s: tf.Tensor) -> tf.Tensor | tf.RaggedTensor:
        """String tensor of any rank -> int32 ids: a 1-D tensor for a scalar, else a RaggedTensor of shape
        `s.shape + [None]` (like SeqIO's SentencePiece vocabulary)."""
        s = tf.convert_to_tensor(s, dtype=tf.string)
        flat, lengths = tf.numpy_function(self._encode_strings_np, [tf.reshape(s, [-1])], [tf.int32, tf.int64],
                                          stateful=False, name=self._TF_ENCODE_NAME)
        flat.set_shape([None])
        if s.shape.rank == 0:
            return flat
        lengths.set_shape([None])
        ragged = tf.RaggedTensor.from_row_lengths(flat, lengths, validate=False)
        for dim in reversed(tf.unstack(tf.shape(s, out_type=tf.int64))[1:]):
            ragged = tf.RaggedTensor.from_uniform_row_length(ragged, dim, validate=False)
        return ragged

    def _decode_rows_np(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids)
        rows = ids.reshape(int(np.prod(ids.shape[:-1], dtype=np.int64)), ids.shape[-1])
        return np.array([self._decode(row.tolist()).encode("utf-8") for row in rows], dtype=object)

    def _decode_tf(self, ids: tf.Tensor) -> tf.Tensor:
        texts = tf.numpy_function(self._decode_rows_np, [ids], tf.string, stateful=False, name=self._TF_DECODE_NAME)
        return tf.reshape(texts, tf.shape(ids)[:-1])

    def _key(self) -> tuple:
        return tuple(self._settings().values())

    def __eq__(self, other) -> bool:
        if not isinstance(other, type(self)):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __getstate__(self) -> dict:
        return self._settings()

    def __setstate__(self, state: dict) -> None:
        seqio.Vocabulary.__init__(self, extra_ids=0)
        self._restore(state)
        self._load()
