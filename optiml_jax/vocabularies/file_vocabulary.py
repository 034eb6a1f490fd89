"""What every SeqIO vocabulary read from tokenizer files needs beyond its ids, written once.

- Equality and hashing by what it was built from (the files and the options): SeqIO compares the vocabularies
  of a mixture's tasks, and caches key on them.
- Pickling that re-reads the files instead of carrying a `tokenizers` object across processes (tf.data
  workers, `tasks cache --workers`), so a vocabulary is cheap to send and never stale.
- TF decoding through the Python decoder (`tf.numpy_function`), one row at a time.
A subclass gives `_settings()` (its constructor's state, a dict of hashable values), `_restore(settings)`,
`_load()` (read the files) and `_decode(ids)`.
"""

from __future__ import annotations

import numpy as np
import seqio
import tensorflow as tf


class FileVocabulary(seqio.Vocabulary):
    _TF_DECODE_NAME = "file_vocabulary_decode"

    def _settings(self) -> dict:
        raise NotImplementedError

    def _restore(self, settings: dict) -> None:
        raise NotImplementedError

    def _load(self) -> None:
        raise NotImplementedError

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
