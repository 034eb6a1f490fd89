"""A shard of one of our tasks whose examples are formatted and tokenized when the stream first draws them.

Why: at OPT-IML Bench scale (~2,000 tasks) the first steps draw one or two examples of most tasks, and tokenizing
every example of every task drawn costs minutes before the first step (perf/RESULTS.md, issue 23). For a task that
has only our preprocessors (`registry.TaskView.standard_pipeline`), example j's tokens are a pure function of its
raw example, so the stream reads the task's raw examples (its JSON or TSV: milliseconds) and tokenizes example j
when it is drawn: a host tokenizes only the examples its rows need. The ids are those of the task's seqio pipeline
(`task_cache._read_in_python`, checked against tf.data in tests/data/test_task_cache_python_read.py).

A full split written by `tasks cache` is read instead when the stream has a `cache_dir` holding it.
"""

from __future__ import annotations

import operator
import threading
from typing import Callable

import numpy as np

from optiml_jax.data.tokenization import TaskDataError, encode_many, text_nbytes


def encode_examples(view, rows) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(inputs ids, targets ids) of raw examples `rows`, as the task's pipeline makes them: `format_texts` (what
    `format_instruction` runs), the vocabulary's batch encoder (what `encode_tf` runs), eos after a feature with
    `add_eos` (`append_eos_after_trim`)."""
    from optiml_jax.tasks.preprocessors import format_texts

    features = view.seqio_task.output_features
    texts = [format_texts(view.info, ex, view.raw.format_seed) for ex in rows]
    out = []
    for name, column in (("inputs", 0), ("targets", 1)):
        feature = features[name]
        eos = [feature.vocabulary.eos_id] if feature.add_eos else []
        out.append([np.asarray(list(ids) + eos, np.int32)
                    for ids in encode_many(feature.vocabulary, [t[column] for t in texts])])
    return out[0], out[1]


class LazyTaskShard:
    """The `TaskTokens` interface the stream uses (`len`, `example`, `inputs_and_targets`, `indices`, `raw`) over
    raw examples, each tokenized on first use and kept (`tokens_read` counts what was tokenized). Thread-safe: the
    stream's read-ahead thread tokenizes the examples the next steps draw while a step is packed."""

    def __init__(self, view, rows, positions: np.ndarray, with_raw: bool):
        from optiml_jax.tasks.registry import RAW_TEXT_FEATURES

        self._view = view
        self._fields = RAW_TEXT_FEATURES
        # the text fields only, as tuples (a dict and the readers' `references` / `options` lists would be several
        # times the task's file in memory): what the formatting reads
        fields = operator.itemgetter(*RAW_TEXT_FEATURES)
        self._rows = tuple(fields(rows[p]) for p in np.asarray(positions, np.int64).tolist())
        self.indices = np.asarray(positions, np.int64)
        self.raw = tuple(dict(zip(RAW_TEXT_FEATURES, r)) for r in self._rows) if with_raw else None
        self._done: dict[int, tuple[np.ndarray, np.ndarray, int]] = {}
        self._weight_of_inputs = 1.0 if view.info.full_sequence_loss else 0.0
        self.tokens_read = 0
        self._lock = threading.Lock()
        self._text_nbytes = text_nbytes(self._rows) + (text_nbytes(self.raw) if self.raw else 0)
        self._token_nbytes = 0
        self.on_grow: Callable[[int], None] | None = None  # told each tokenized example's bytes (resident_shards)

    def __len__(self) -> int:
        return len(self._rows)

    def _get(self, j: int) -> tuple[np.ndarray, np.ndarray, int]:
        j = int(j)
        hit = self._done.get(j)
        if hit is not None:
            return hit
        with self._lock:  # one tokenization per example, whichever thread asks first
            hit = self._done.get(j)
            if hit is not None:
                return hit
            hit = self._done[j] = self._encode(j)
            self.tokens_read += len(hit[0])
            grown = hit[0].nbytes + hit[1].nbytes + 250  # two arrays and a tuple
            self._token_nbytes += grown
        if self.on_grow is not None:
            self.on_grow(grown)
        return hit

    @property
    def nbytes(self) -> int:
        """Approximate memory: the text fields held and the examples tokenized so far."""
        return self._text_nbytes + self._token_nbytes

    def _encode(self, j: int) -> tuple[np.ndarray, np.ndarray, int]:
        (inputs,), (targets,) = encode_examples(self._view, [dict(zip(self._fields, self._rows[j]))])
        if not len(targets):
            raise TaskDataError(f"task {self._view.name!r}, example {int(self.indices[j])}: empty 'targets' "
                                "after the task's preprocessors (nothing to train on)")
        ids = np.concatenate([inputs, targets]).astype(np.int32)
        weights = np.concatenate([np.full(len(inputs), self._weight_of_inputs, np.float32),
                                  np.ones(len(targets), np.float32)])
        return ids, weights, len(inputs)

    def example(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        ids, weights, _ = self._get(j)
        return ids, weights

    def inputs_and_targets(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        ids, _, start = self._get(j)
        return ids[:start], ids[start:]

    @property
    def lengths(self) -> np.ndarray:
        """Every example's length (tokenizes them all)."""
        return np.array([len(self._get(j)[0]) for j in range(len(self))], np.int64)
