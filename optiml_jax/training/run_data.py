"""A run's data, opened before MODEL_DIR is touched: this process's stream, the eval-loss streams, the first
batch (its truncation checked) and the record of what is read.

Why before MODEL_DIR: a wrong MIXTURE_OR_TASK_NAME or TASK_FEATURE_LENGTHS must stop the run with MODEL_DIR as it
was (no lock file, no model_config.json). An unknown name is the data layer's one line
(`optiml_jax.data.mixture_names`), a damaged file names that file; neither is guessed at here.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import jax
import numpy as np

from optiml_jax.checkpoints import training_runs as checkpointing
from optiml_jax.training.errors import ConfigValueError
from optiml_jax.training.partitioning import Partitioner
from optiml_jax.training.run_config import DataConfig, EvaluationConfig
from optiml_jax.training.trainer import process_batch_slice

log = logging.getLogger(__name__)


@dataclasses.dataclass
class RunData:
    stream: Any  # this process's training stream (get_batch(step), optionally state()/restore())
    evals: dict[str, Any]  # split -> eval-loss stream
    first_batches: dict[int, Any]  # step -> the batch already read (the truncation probe)
    record: dict  # describe_stream(stream): what the run trains on (logged, and kept in run.json)
    warnings: list[str]


def check_batch_splits(part: Partitioner, batch_size: int) -> None:
    """The global batch must split evenly over the mesh's batch shards (else JAX's IndivisibleError, later)."""
    shards = part.data_shard_count
    if batch_size % shards == 0:
        return
    spec = part.batch_sharding.spec
    axes = spec[0] if len(spec) else None
    axes = () if axes is None else (axes if isinstance(axes, tuple) else (axes,))
    split = " x ".join(f"{a}={part.mesh.shape[a]}" for a in axes) or "none"
    good = [b for b in range(shards, 8 * shards + 1, shards)][:3]
    raise ConfigValueError(
        f"BATCH_SIZE = {batch_size} cannot be split over the mesh: MESH_SHAPE gives {dict(part.mesh.shape)}, and the "
        f"batch is split over {split} = {shards} shards. Use a BATCH_SIZE that is a multiple of {shards} "
        f"(e.g. {', '.join(map(str, good))}) or a MESH_SHAPE whose batch axes divide {batch_size}.")


def open_run_data(data: DataConfig, evaluation: EvaluationConfig, *, part: Partitioner, seed: int, model_dir,
                  check_vocabulary) -> RunData:
    """Streams for this process's rows, then the first batch; `check_vocabulary(stream)` runs before any read."""
    shard_index, num_shards = process_batch_slice(part, data.batch_size, data.length)
    kwargs = dict(mixture_or_task_name=data.mixture_or_task_name, task_feature_lengths=data.task_feature_lengths,
                  batch_size=data.batch_size, shard_index=shard_index, num_shards=num_shards)
    stream = data.stream_factory(seed=seed, **kwargs)
    log.info("process %d of %d feeds data shard %d of %d", jax.process_index(), jax.process_count(), shard_index,
             num_shards)
    check_vocabulary(stream)  # no batch needed: before reading any
    evals = {split: factory(seed=seed + 1, **kwargs) for split, factory in evaluation.eval_streams.items()}
    first_batches, warnings = _probe_first_batch(stream, data, model_dir)
    record = describe_stream(stream)
    if record.get("source") == "mixture" and not record.get("tasks_read"):
        raise ConfigValueError(f"MIXTURE_OR_TASK_NAME = {data.mixture_or_task_name!r}: the first batch read no task; "
                               "nothing would be trained on")
    for line in data_record_lines(record):
        log.info("%s", line)
    return RunData(stream, evals, first_batches, record, warnings)


def _probe_first_batch(stream, data: DataConfig, model_dir) -> tuple[dict, list[str]]:
    if not hasattr(stream, "get_batch_with_stats"):
        return {}, []
    existing = checkpointing.finalized_steps_on_disk(model_dir)
    # a stream that resumes from its checkpointed state (`restore`) probes step 0: before the restore, the
    # checkpoint's step would be replayed from the start
    probe = existing[-1] if existing and not hasattr(stream, "restore") else 0
    batch, stats = stream.get_batch_with_stats(probe)
    msg = check_truncation(stats, step=probe, length=data.length, task_feature_lengths=data.task_feature_lengths,
                           max_fraction=data.max_truncated_fraction)
    return {probe: batch}, [msg] if msg else []


def describe_stream(stream) -> dict:
    """The stream's own account of what it trains on (`describe()`), or what can be said of a custom one."""
    if hasattr(stream, "describe"):
        return stream.describe()
    return {"source": f"custom stream {type(stream).__module__}.{type(stream).__qualname__}", "tasks_read": {}}


def data_record_lines(record: dict) -> list[str]:
    """The run's first log lines: the mixture, the tokenizer, the seed and the tasks read with their counts."""
    if record.get("source") == "synthetic":
        return ["SYNTHETIC DATA: this run trains on random tokens, not on a task or mixture "
                f"(DataConfig.stream_factory = @synthetic_stream, seed {record.get('seed')})"]
    read = record.get("tasks_read", {})
    lines = [f"data: {record.get('mixture_or_task_name', record.get('source'))} ({record.get('num_tasks', '?')} "
             f"task(s) with rate > 0), split {record.get('split', '?')!r}, seed {record.get('seed')}, tokenizer "
             f"{record.get('tokenizer')} (vocab {record.get('vocab_size')}); {len(read)} task(s) read so far, "
             f"{sum(t['examples'] for t in read.values())} examples, {sum(t['tokens'] for t in read.values())} tokens "
             "tokenized"]
    for name, counts in list(read.items())[:20]:
        lines.append(f"  {name}: {counts['examples']} examples, {counts['tokens']} tokens tokenized")
    if len(read) > 20:
        lines.append(f"  ... and {len(read) - 20} more (MODEL_DIR/run.json lists every one)")
    return lines


def _global_sum(values: list[int]) -> list[int]:
    if jax.process_count() == 1:
        return list(values)
    from jax.experimental import multihost_utils

    return [int(x) for x in np.asarray(multihost_utils.process_allgather(np.asarray(values, np.int64))).sum(0)]


def check_truncation(stats, *, step: int, length: int, task_feature_lengths, max_fraction: float) -> str | None:
    """From the first batch's StepStats: an error when every drawn example is longer than the row, a warning
    (returned and logged) when more than `max_fraction` of them are."""
    truncated, drawn, placed = _global_sum([int(stats.truncated), int(stats.examples) + int(stats.unplaced),
                                            int(stats.examples)])
    if drawn == 0:
        return None
    share = truncated / drawn
    where = f"TASK_FEATURE_LENGTHS = {dict(task_feature_lengths)} ({length}-token rows)"
    if truncated >= drawn or placed == 0:
        raise ConfigValueError(f"{where}: every one of the {drawn} examples drawn for step {step} is longer than a row "
                               "and would be cut from the left; nothing fits. Raise TASK_FEATURE_LENGTHS.")
    if share > max_fraction:
        msg = (f"{where}: {truncated} of the {drawn} examples drawn for step {step} ({share:.0%}) are longer than a "
               f"row and are cut from the left (warning above DataConfig.max_truncated_fraction = {max_fraction:.0%}); "
               "consider raising TASK_FEATURE_LENGTHS")
        log.warning(msg)
        return msg
    return None
