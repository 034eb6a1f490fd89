"""Fixed packed batches of a task's evaluation split, for eval loss (same contract as training batches).

Every example of the split (or its first `max_examples`) appears exactly once, zero-shot, read through the
task's seqio pipeline exactly as in training, left-truncated to the row length, packed best-fit-decreasing. Example p belongs to host
p % num_shards; every host gets the same number of batches (the largest over hosts, padded with all-padding
rows) so pjit'd eval steps stay in lockstep. Deterministic: no RNG besides the per-example delimiter.
"""

from __future__ import annotations

import gin
import numpy as np

from optiml_jax.data import packing
from optiml_jax.data.chat_examples import chat_task_tokens
from optiml_jax.data.stream import sequence_length
from optiml_jax.data.task_cache import task_tokens
from optiml_jax.data.tokenization import truncate_left
from optiml_jax.tasks import mixtures, registry
from optiml_jax.vocabularies.chat_template import ChatTemplate
from optiml_jax.vocabularies.special_ids import special_ids_of


def _special_ids(task_name: str):
    """The bos / eos / pad of the task's vocabulary (the batches are the model family's sequences)."""
    return special_ids_of(registry.get_task(task_name).vocabulary)


def _pack_all(examples, length: int, ids=None) -> tuple[list, np.ndarray]:
    """Best-fit-decreasing with as many rows as needed; returns (examples, row of each)."""
    rows = np.full(len(examples), -1, np.int64)
    lengths = np.array([packing.segment_length(len(i), ids) for i, _ in examples], np.int64)
    n_rows = 0
    while (rows < 0).any():
        todo = np.flatnonzero(rows < 0)
        extra = max(1, int(np.ceil(lengths[todo].sum() / length)))
        placed = packing.best_fit_decreasing(lengths[todo], np.full(extra, length, np.int64))
        rows[todo[placed >= 0]] = placed[placed >= 0] + n_rows
        n_rows += extra
    return examples, rows


def _shard_rows(task_name, split, length, shard, num_shards, max_examples, use_cached, use_chat_template=False):
    toks = task_tokens(task_name, split, use_cached=use_cached)
    if use_chat_template:  # the conversations training sees with USE_CHAT_TEMPLATE (data/chat_examples.py)
        view = registry.get_task(task_name)
        toks = chat_task_tokens(view, toks, ChatTemplate.from_vocabulary(view.vocabulary), _special_ids(task_name))
    n = len(toks) if max_examples is None else min(len(toks), max_examples)
    exs = []
    for j in range(shard, n, num_shards):
        ids, w = toks.example(j)
        ids, w, _ = truncate_left(ids, w, length)
        exs.append((ids, w))
    exs, rows = _pack_all(exs, length, _special_ids(task_name))
    return exs, rows, (int(rows.max()) + 1 if len(rows) else 0)


@gin.configurable
def get_eval_batches(task_name: str, task_feature_lengths=2048, batch_size: int = 8, split: str = "validation",
                     shard_index: int = 0, num_shards: int = 1, max_examples: int | None = None,
                     use_cached: bool = False, use_chat_template: bool = False) -> list[dict[str, np.ndarray]]:
    """This host's packed eval batches ([batch_size // num_shards, length] each) of one task's split
    (`use_chat_template`, gin `%USE_CHAT_TEMPLATE`: as conversations, like the training stream's)."""
    if batch_size % num_shards:
        raise ValueError(f"global batch_size {batch_size} is not divisible by num_shards {num_shards}")
    length, per_host = sequence_length(task_feature_lengths), batch_size // num_shards
    row_counts = [_shard_rows(task_name, split, length, s, num_shards, max_examples, use_cached, use_chat_template)[2]
                  for s in range(num_shards)]
    n_batches = max(1, int(np.ceil(max(row_counts) / per_host)))
    exs, rows, _ = _shard_rows(task_name, split, length, shard_index, num_shards, max_examples, use_cached,
                               use_chat_template)
    full = packing.write_rows(exs, rows, n_batches * per_host, length, _special_ids(task_name))
    return [{k: v[b * per_host:(b + 1) * per_host] for k, v in full.items()} for b in range(n_batches)]


def get_eval_batches_per_task(mixture_or_task_name: str, **kwargs) -> dict[str, list[dict[str, np.ndarray]]]:
    """{task: get_eval_batches(task, **kwargs)} for every task of a mixture (or the one task)."""
    return {t: get_eval_batches(t, **kwargs) for t in sorted(mixtures.resolve_rates(mixture_or_task_name))}
