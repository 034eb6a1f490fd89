"""`train()`: the T5X-style training run (gin binds its arguments; it does not import gin itself).

Start-up order: the configured values are checked (types, ranges, a batch the mesh can split) -> mesh + rules ->
optimizer -> this process's data stream (an unknown MIXTURE_OR_TASK_NAME is one line with the closest registered
names) and its first batch (a TASK_FEATURE_LENGTHS that truncates most examples warns, one that truncates all is
an error) -> only then MODEL_DIR: the run lock (a second trainer refuses to start), writability and free space of
MODEL_DIR and checkpoints/ -> state (the newest *intact* checkpoint in MODEL_DIR if any: damaged ones are
reported, moved aside and skipped; else parameters from INITIAL_CHECKPOINT_PATH, else random init) -> metrics
files cut back to the restored step -> loop. A configuration error therefore creates nothing.
Restarting is running the same command again: the step stored in the checkpoint is the data position
(the stream is step-indexed) and dropout keys derive from the step, so every later step is identical.

Stream factories (the `stream_factory` / `eval_streams` callables) are called as
    factory(mixture_or_task_name=..., task_feature_lengths=..., batch_size=<global>, seed=...,
            shard_index=..., num_shards=...)
and return an object with `get_batch(step)` (docs/ARCHITECTURE.md "Batch contract") and optionally
`state() -> dict` (stored with each checkpoint) and `restore(state, step) -> bool` (given it back on resume).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import numbers
import os
import pathlib
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

from optiml_jax.models import LlamaConfig, ModelConfig, OPTConfig
from optiml_jax.paths import reachable_user_path
from optiml_jax.checkpoints import training_runs as checkpointing
from optiml_jax.training import metrics as metrics_lib, run_record, train_state
from optiml_jax.checkpoints.errors import StorageError
from optiml_jax.training.errors import ConfigValueError, NonFiniteError, RunLockedError
from optiml_jax.training.model_config import (check_matches_checkpoint, check_same_architecture, check_vocabulary_fits,
                                              with_vocabulary_ids)
from optiml_jax.training.optimizer import make_optimizer, make_schedule
from optiml_jax.training.partitioning import Partitioner, make_partitioner
from optiml_jax.training.preemption import Preempted, PreemptionWatch, watch_settings
from optiml_jax.training.resume_checks import check_resume, mesh_fit_error
from optiml_jax.training.run_dir import RunLock, check_storage
from optiml_jax.training.trainer import Trainer, process_batch_slice

log = logging.getLogger(__name__)
NONFINITE_POLICIES = ("stop", "skip")
EVAL_DUE_KEY = "eval_due"  # in a checkpoint's data position: its step's evaluation has not run (preempted)
__all__ = ["NonFiniteError", "TrainResult", "train", "summarize_eval"]


@dataclasses.dataclass
class TrainResult:
    model_dir: pathlib.Path
    start_step: int
    final_step: int
    state: Any
    history: list[dict]  # logged train records (process-local copy of train.jsonl lines)
    eval_results: dict[str, dict]  # split -> {"loss", "token_accuracy", "label_tokens"} at the end
    task_eval_results: dict[int, dict]  # step -> eval_callback's results
    restored_from: int | None
    skipped_steps: list[int] = dataclasses.field(default_factory=list)  # non-finite steps skipped by this process
    skipped_total: int = 0  # ... including the ones logged before a restart
    set_aside: list[dict] = dataclasses.field(default_factory=list)  # damaged checkpoints moved aside at restore
    warnings: list[str] = dataclasses.field(default_factory=list)  # start-up warnings (truncation, free space)


def _load_initial_state(path, config, tx, partitioner) -> Any:
    """Fresh optimizer state around parameters from any checkpoint the resolver accepts
    (one of our runs, a converter Orbax dir, a Hugging Face dir, a metaseq checkpoint)."""
    from optiml_jax.checkpoints.resolve import load_checkpoint, load_training_params, resolve

    ref = resolve(path, setting="INITIAL_CHECKPOINT_PATH")
    if ref.kind == "training_run":
        saved = ref.saved_config()
        if saved is not None:
            check_same_architecture(config, saved, str(path))
        target = train_state.abstract_state(config, tx, partitioner).params
        _, params, step = load_training_params(ref, target)
        log.info("initial parameters from training run %s step %d", ref.run_dir, step)
        return train_state.state_from_params(config, tx, partitioner, jax.device_get(params))
    if ref.kind == "metaseq":  # streamed onto the devices with the state's shardings: never the whole tree on a host
        from optiml_jax.checkpoints.metaseq import load_metaseq

        check_same_architecture(config, ref.saved_config(), str(path))
        found, params = load_metaseq(ref.path, target=train_state.abstract_state(config, tx, partitioner).params)
        log.info("initial parameters from %s (metaseq, streamed onto the mesh)", path)
        return train_state.state_from_params(config, tx, partitioner, params)
    found, params = load_checkpoint(ref.path, scanned=config.scan_layers)  # Orbax or Hugging Face
    check_same_architecture(config, found, str(path))
    log.info("initial parameters from %s (%s)", path, ref.kind)
    return train_state.state_from_params(config, tx, partitioner, params)


def _evaluate(trainer: Trainer, params, streams: dict, num_batches: int, batch_size: int) -> dict[str, dict]:
    results = {}
    for split, stream in streams.items():
        sums = {"ce_sum": 0.0, "label_tokens": 0.0, "correct_tokens": 0.0}
        for i in range(num_batches):
            out = jax.device_get(trainer.eval_step(params, trainer.global_batch(stream.get_batch(i), batch_size)))
            for k in sums:
                sums[k] += float(out[k])
        n = max(sums["label_tokens"], 1.0)
        results[split] = {"loss": sums["ce_sum"] / n, "token_accuracy": sums["correct_tokens"] / n,
                          "label_tokens": sums["label_tokens"]}
    return results


# ---------------------------------------------------------------- checks where the values enter
# train() argument -> the gin macro gin/runs/train.gin binds it to (for messages).
MACRO_OF = {
    "model_dir": "MODEL_DIR", "mixture_or_task_name": "MIXTURE_OR_TASK_NAME",
    "task_feature_lengths": "TASK_FEATURE_LENGTHS", "train_steps": "TRAIN_STEPS", "batch_size": "BATCH_SIZE",
    "learning_rate": "LEARNING_RATE", "warmup_steps": "WARMUP_STEPS", "lr_decay": "LR_DECAY",
    "weight_decay": "WEIGHT_DECAY", "clip_grad_norm": "CLIP_GRAD_NORM", "seed": "SEED",
    "num_microbatches": "NUM_MICROBATCHES", "loss_chunk_size": "LOSS_CHUNK_SIZE",
    "checkpoint_period": "CHECKPOINT_PERIOD", "keep_checkpoints": "KEEP_CHECKPOINTS", "eval_period": "EVAL_PERIOD",
    "log_period": "LOG_PERIOD", "on_nonfinite": "ON_NONFINITE", "peak_flops": "PEAK_FLOPS",
    "verify_checkpoints": "VERIFY_CHECKPOINTS",
}


def _name(arg: str) -> str:
    macro = MACRO_OF.get(arg)
    return f"{macro} (train.{arg})" if macro else f"train.{arg}"


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _bad(arg: str, value, want: str) -> ConfigValueError:
    return ConfigValueError(f"{_name(arg)} = {value!r}: must be {want} (got {type(value).__name__})")


def check_arguments(args: dict) -> None:
    """Types and ranges of train()'s arguments, each error naming the macro it came from."""
    ints = {"train_steps": 1, "batch_size": 1, "warmup_steps": 0, "num_microbatches": 1, "checkpoint_period": 1,
            "eval_period": 0, "eval_batches": 1, "log_period": 1, "max_consecutive_nonfinite": 0}
    for arg, low in ints.items():
        v = args[arg]
        if not _is_int(v) or v < low:
            raise _bad(arg, v, f"an integer >= {low}")
    if not _is_int(args["seed"]):
        raise _bad("seed", args["seed"], "an integer")
    for arg in ("keep_checkpoints", "loss_chunk_size"):
        v = args[arg]
        if v is not None and (not _is_int(v) or v < 1):
            raise _bad(arg, v, "None or an integer >= 1")
    for arg in ("learning_rate", "end_learning_rate", "weight_decay", "adam_b1", "adam_b2", "adam_eps"):
        v = args[arg]
        if not _is_real(v) or not math.isfinite(v) or v < 0:
            raise _bad(arg, v, "a finite number >= 0")
    for arg in ("clip_grad_norm", "peak_flops"):
        v = args[arg]
        if v is not None and (not _is_real(v) or not v > 0):
            raise _bad(arg, v, "None or a number > 0")
    frac = args["max_nonfinite_fraction"]
    if not _is_real(frac) or not 0 <= frac <= 1:
        raise _bad("max_nonfinite_fraction", frac, "a fraction in [0, 1]")
    frac = args["max_truncated_fraction"]
    if not _is_real(frac) or not 0 <= frac <= 1:
        raise _bad("max_truncated_fraction", frac, "a fraction in [0, 1]")
    tfl = args["task_feature_lengths"]
    if not isinstance(tfl, Mapping) or not tfl or not all(_is_int(v) and v > 0 for v in tfl.values()):
        raise ConfigValueError(f"{_name('task_feature_lengths')} = {tfl!r}: must be a mapping of feature name to a "
                               "positive length, e.g. {'targets': 2048}")
    name = args["mixture_or_task_name"]
    if not isinstance(name, str) or not name:
        raise _bad("mixture_or_task_name", name, "a task or mixture name")
    if not isinstance(args["model_dir"], (str, os.PathLike)) or not os.fspath(args["model_dir"]):
        raise _bad("model_dir", args["model_dir"], "a directory path")
    if not isinstance(args["model_config"], (OPTConfig, LlamaConfig)):
        raise _bad("model_config", args["model_config"], "an OPTConfig or LlamaConfig (gin: train.model_config = "
                   "@opt_config() or @llama_config())")
    if args["on_nonfinite"] not in NONFINITE_POLICIES:
        raise ConfigValueError(f"{_name('on_nonfinite')} = {args['on_nonfinite']!r}: must be one of "
                               f"{NONFINITE_POLICIES}")
    if args["batch_size"] % args["num_microbatches"]:
        raise ConfigValueError(f"BATCH_SIZE = {args['batch_size']} is not divisible by NUM_MICROBATCHES = "
                               f"{args['num_microbatches']}")


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


def _make_stream(factory: Callable, what: str, **kwargs):
    """Call a stream factory. Its errors propagate as raised: an unknown name is the data layer's one line
    (`optiml_jax.data.mixture_names`), a damaged file names that file; neither is guessed at here."""
    if factory is None:
        raise ConfigValueError(f"train.stream_factory is unset ({what}): bind @get_train_stream (gin/runs/train.gin "
                               "does), or @synthetic_stream for a smoke run on random tokens")
    return factory(**kwargs)


def describe_stream(stream) -> dict:
    """The stream's own account of what it trains on (`describe()`), or what can be said of a custom one."""
    if hasattr(stream, "describe"):
        return stream.describe()
    return {"source": f"custom stream {type(stream).__module__}.{type(stream).__qualname__}", "tasks_read": {}}


def data_record_lines(record: dict) -> list[str]:
    """The run's first log lines: the mixture, the tokenizer, the seed and the tasks read with their counts."""
    if record.get("source") == "synthetic":
        return ["SYNTHETIC DATA: this run trains on random tokens, not on a task or mixture "
                f"(train.stream_factory = @synthetic_stream, seed {record.get('seed')})"]
    read = record.get("tasks_read", {})
    lines = [f"data: {record.get('mixture_or_task_name', record.get('source'))} ({record.get('num_tasks', '?')} "
             f"task(s) with rate > 0), split {record.get('split', '?')!r}, seed {record.get('seed')}, tokenizer "
             f"{record.get('tokenizer')} (vocab {record.get('vocab_size')}); {len(read)} task(s) read so far, "
             f"{sum(t['examples'] for t in read.values())} examples, {sum(t['tokens'] for t in read.values())} tokens"]
    for name, counts in list(read.items())[:20]:
        lines.append(f"  {name}: {counts['examples']} examples, {counts['tokens']} tokens")
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
               f"row and are cut from the left (warning above train.max_truncated_fraction = {max_fraction:.0%}); "
               "consider raising TASK_FEATURE_LENGTHS")
        log.warning(msg)
        return msg
    return None


def _every_process(ok: bool) -> bool:
    if jax.process_count() == 1:
        return ok
    from jax.experimental import multihost_utils

    return bool(np.all(multihost_utils.process_allgather(np.asarray([int(ok)], np.int32))))


@dataclasses.dataclass
class TrainerSetup:
    """Everything `train()` builds before touching data or checkpoints (`build_trainer`)."""

    partitioner: Partitioner
    schedule: Any
    tx: Any
    written_config: ModelConfig  # the architecture as configured (what model_config.json records)
    model_config: ModelConfig  # the same with this mesh's attention backend name
    shardings: Any  # TrainState-shaped NamedShardings
    trainer: Trainer


def build_trainer(*, model_config: ModelConfig, partitioner: Partitioner | Callable[[], Partitioner], train_steps: int,
                  learning_rate: float, warmup_steps: int, lr_decay: str, end_learning_rate: float, adam_b1: float,
                  adam_b2: float, adam_eps: float, weight_decay: float, clip_grad_norm: float, seed: int,
                  num_microbatches: int, loss_normalization: Any, loss_chunk_size: int | None) -> TrainerSetup:
    """Mesh, schedule, optimizer, shardings and the jitted steps of a run, from `train()`'s own arguments.

    Why a separate function: `optiml_jax.plan` lowers and compiles the very train step `train()` runs (on
    abstract shapes, for a pod it does not have); both build it here, so they cannot drift apart.
    """
    part = partitioner() if callable(partitioner) and not isinstance(partitioner, Partitioner) else partitioner
    schedule = make_schedule(learning_rate, warmup_steps, train_steps, lr_decay, end_learning_rate)
    tx = make_optimizer(schedule, adam_b1, adam_b2, adam_eps, weight_decay, clip_grad_norm=clip_grad_norm)
    written_config = model_config  # what model_config.json records: the architecture, not this mesh's kernel name
    model_config = model_config.replace(attention_backend=part.attention_backend_for(model_config.attention_backend))
    mesh_fit_error(model_config, tx, part)  # before any checkpoint is read: a restore would call them damaged
    shardings = train_state.state_shardings(model_config, tx, part)
    trainer = Trainer(model_config, tx, schedule, part, shardings, seed=seed, num_microbatches=num_microbatches,
                      loss_normalization=loss_normalization, loss_chunk_size=loss_chunk_size)
    return TrainerSetup(part, schedule, tx, written_config, model_config, shardings, trainer)


def train(
    *,
    model_dir: str,
    mixture_or_task_name: str,
    task_feature_lengths: dict,
    train_steps: int,
    batch_size: int,
    model_config: ModelConfig,
    stream_factory: Callable,
    partitioner: Partitioner | Callable[[], Partitioner] = make_partitioner,
    learning_rate: float = 5e-5,
    warmup_steps: int = 60,
    lr_decay: str = "linear",
    end_learning_rate: float = 0.0,
    adam_b1: float = 0.9,
    adam_b2: float = 0.95,
    adam_eps: float = 1e-8,
    weight_decay: float = 0.0,
    clip_grad_norm: float = 1.0,
    seed: int = 0,
    num_microbatches: int = 1,
    loss_normalization: Any = "tokens",
    loss_chunk_size: int | None = None,
    checkpoint_period: int = 1000,
    keep_checkpoints: int | None = 3,
    async_checkpoints: bool = True,
    verify_checkpoints: bool = True,
    initial_checkpoint_path: str | None = None,
    eval_streams: dict[str, Callable] | None = None,
    eval_callback: Callable[[ModelConfig, Any, int, pathlib.Path], dict] | None = None,
    eval_period: int = 0,
    eval_batches: int = 1,
    log_period: int = 1,
    on_nonfinite: str = "stop",
    max_consecutive_nonfinite: int = 10,
    max_nonfinite_fraction: float = 0.01,
    max_truncated_fraction: float = 0.1,
    peak_flops: float | None = None,
    progress: bool = True,
    setup_callback: Callable[[pathlib.Path], None] | None = None,
    lock_stale_after_s: float = 600.0,
    max_runtime: float | str | None = None,
    max_runtime_margin_s: float = 30.0,
    preemption_check_period: int = 1,
    model_config_origin: str = "train.model_config",
) -> TrainResult:
    """Train `model_config` on the mixture for `train_steps` steps of `batch_size` sequences.

    `task_feature_lengths` gives the packed row length (sum of its values, decoder-only).
    `loss_chunk_size` computes the LM head and loss that many positions at a time, without [B, L, vocab]
    logits (`chunked_cross_entropy`); None = plain logits.
    `eval_streams` give eval *loss* per split; `eval_callback(config, params, step, model_dir)` runs task
    evaluation (rank classification / generation, e.g. `optiml_jax.evaluation.hooks.EvalCallback`; a SeqIO
    task's metric_fns: `SeqioEvalCallback`; several: `CompositeCallback`) before the first step of a fresh run,
    every `eval_period` steps and at the end. The trainer never imports the evaluation layer: gin binds the
    callback.
    `on_nonfinite`: 'stop' ends the run at the first non-finite loss or gradient norm; 'skip' keeps the previous
    parameters and goes on, until more than `max_consecutive_nonfinite` steps in a row, or in all more than
    max(`max_consecutive_nonfinite`, ceil(`max_nonfinite_fraction` * train_steps)) steps (counting the ones
    train.jsonl records from before a restart), were skipped: then it stops like 'stop'.
    `verify_checkpoints`: record per-array checksums with every checkpoint and verify them on restore.
    `max_truncated_fraction`: warn when more of the first batch's examples are cut to the row length.
    SIGTERM/SIGINT/SIGUSR1, or `max_runtime` (gin MAX_RUNTIME: seconds, '2h30m', '04:00:00') less
    `max_runtime_margin_s` and the slowest step and save, end the run at one step all processes agree on
    (checked every `preemption_check_period` steps) after saving it: `Preempted` (exit 143; training/preemption.py).
    `model_config_origin` names where `model_config` was set (the CLI passes the model file), for the error when it
    disagrees with `initial_checkpoint_path`'s recorded config.
    """
    check_arguments(dict(locals()))
    preemption = watch_settings(max_runtime, max_runtime_margin_s, preemption_check_period)
    model_dir = checkpointing.orbax_dir_path(model_dir, "MODEL_DIR")  # a URL stays a URL (optiml_jax.paths)
    initial_checkpoint_path = reachable_user_path(initial_checkpoint_path, "INITIAL_CHECKPOINT_PATH")
    check_matches_checkpoint(model_config, initial_checkpoint_path, model_config_origin)  # JSON only, before MODEL_DIR
    length = int(sum(task_feature_lengths.values()))
    part = partitioner() if callable(partitioner) and not isinstance(partitioner, Partitioner) else partitioner
    check_batch_splits(part, batch_size)
    setup = build_trainer(
        model_config=model_config, partitioner=part, train_steps=train_steps, learning_rate=learning_rate,
        warmup_steps=warmup_steps, lr_decay=lr_decay, end_learning_rate=end_learning_rate, adam_b1=adam_b1,
        adam_b2=adam_b2, adam_eps=adam_eps, weight_decay=weight_decay, clip_grad_norm=clip_grad_norm, seed=seed,
        num_microbatches=num_microbatches, loss_normalization=loss_normalization, loss_chunk_size=loss_chunk_size)
    part, schedule, tx, trainer = setup.partitioner, setup.schedule, setup.tx, setup.trainer
    written_config, model_config = setup.written_config, setup.model_config

    # The data, before anything is written: a wrong name or length stops here and MODEL_DIR stays untouched.
    shard_index, num_shards = process_batch_slice(part, batch_size, length)
    stream_kwargs = dict(mixture_or_task_name=mixture_or_task_name, task_feature_lengths=task_feature_lengths,
                         batch_size=batch_size, shard_index=shard_index, num_shards=num_shards)
    stream = _make_stream(stream_factory, "the training stream", seed=seed, **stream_kwargs)
    log.info("process %d of %d feeds data shard %d of %d", jax.process_index(), jax.process_count(), shard_index,
             num_shards)
    check_vocabulary_fits(stream, model_config, mixture_or_task_name)  # no batch needed: before reading any
    written_config = with_vocabulary_ids(written_config, stream)  # model_config.json, evaluation, export
    evals = {split: _make_stream(f, f"eval split {split!r}", seed=seed + 1, **stream_kwargs)
             for split, f in (eval_streams or {}).items()}
    start_warnings: list[str] = []
    first_batches: dict[int, Any] = {}
    if hasattr(stream, "get_batch_with_stats"):
        existing = checkpointing.finalized_steps_on_disk(model_dir)
        # a stream that resumes from its checkpointed state (`restore`) probes step 0: before the restore below,
        # the checkpoint's step would be replayed from the start
        probe = existing[-1] if existing and not hasattr(stream, "restore") else 0
        batch0, stats0 = stream.get_batch_with_stats(probe)
        first_batches[probe] = batch0
        msg = check_truncation(stats0, step=probe, length=length, task_feature_lengths=task_feature_lengths,
                               max_fraction=max_truncated_fraction)
        if msg:
            start_warnings.append(msg)

    data_record = describe_stream(stream)
    if data_record.get("source") == "mixture" and not data_record.get("tasks_read"):
        raise ConfigValueError(f"MIXTURE_OR_TASK_NAME = {mixture_or_task_name!r}: the first batch read no task; "
                               "nothing would be trained on")
    for line in data_record_lines(data_record):
        log.info("%s", line)

    # MODEL_DIR: lock it, check it can take checkpoints, then restore or initialise.
    lock = RunLock(model_dir, stale_after_s=lock_stale_after_s)
    error = None
    if jax.process_index() == 0:
        try:
            lock.acquire()
        except Exception as e:  # noqa: BLE001 (re-raised below, after every process learned the outcome)
            error = e
    if not _every_process(error is None):
        lock.release()
        if error is not None:
            raise error
        raise RunLockedError(f"process 0 could not take the run lock of {model_dir} (see its log)")
    ckpt = None
    logger = None
    try:
        abstract = train_state.abstract_state(model_config, tx, part)
        checkpoint_bytes = sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(abstract))
        error = None
        try:
            start_warnings += check_storage(model_dir, model_dir / checkpointing.CHECKPOINT_SUBDIR,
                                            checkpoint_bytes=checkpoint_bytes, keep=keep_checkpoints,
                                            process_index=jax.process_index())
        except Exception as e:  # noqa: BLE001
            error = e
        if not _every_process(error is None):
            if error is not None:
                raise error
            raise StorageError(f"{model_dir}: another process found MODEL_DIR or checkpoints/ unwritable (see its log)")
        ckpt = checkpointing.TrainCheckpointManager(model_dir, period=checkpoint_period, keep=keep_checkpoints,
                                                    async_save=async_checkpoints, verify=verify_checkpoints)
        run_shape = {"batch_size": batch_size, "task_feature_lengths": dict(task_feature_lengths),
                     "train_steps": train_steps}  # saved with the data position of every checkpoint
        found = ckpt.restore_latest_intact(abstract)  # another model: refused here, before model_config.json
        set_aside: list[dict] = []
        if found is not None:
            state, data_state, start_step, set_aside = found
            start_warnings += check_resume(data_state, run_shape, start_step, ckpt.directory)
            restored_from = start_step
            if hasattr(stream, "restore") and not stream.restore(data_state.get("stream"), start_step):
                log.warning("checkpoint step %d has no stream state for this stream; its batches are replayed "
                            "from step 0 (the same batches, computed more slowly)", start_step)
            log.info("restored %s step %d (data position %s)", ckpt.directory, start_step,
                     {k: v for k, v in data_state.items() if k != "stream"})
        elif initial_checkpoint_path:
            state, start_step, restored_from = _load_initial_state(initial_checkpoint_path, model_config, tx, part), 0, None
        else:
            state, start_step, restored_from = train_state.init_state(model_config, tx, part, seed), 0, None
        if jax.process_index() == 0:  # only now: a refused resume leaves MODEL_DIR as it was
            (model_dir / "model_config.json").write_text(written_config.to_json())
        ckpt.prepare(state)  # the background save's host copy is compiled here, not in the first save's step
        trainer = Trainer(model_config, tx, schedule, part, train_state.state_shardings(model_config, tx, part),
                          seed=seed, num_microbatches=num_microbatches, loss_normalization=loss_normalization,
                          loss_chunk_size=loss_chunk_size)
        if setup_callback is not None and jax.process_index() == 0:
            setup_callback(model_dir)
        launch = None
        if jax.process_index() == 0:
            run_record.keep_tokenizer(model_dir, data_record)
            launch = run_record.start_launch(
                model_dir, data=data_record, start_step=start_step, process_count=jax.process_count(),
                settings={"mixture_or_task_name": mixture_or_task_name, "task_feature_lengths": dict(task_feature_lengths),
                          "batch_size": batch_size, "train_steps": train_steps, "seed": seed,
                          "initial_checkpoint_path": initial_checkpoint_path, "model": json.loads(written_config.to_json())})

        peak, peak_source = metrics_lib.job_peak_flops(peak_flops)
        flops_per_step = metrics_lib.flops_per_token(model_config, length) * batch_size * length
        logger = metrics_lib.MetricsLogger(model_dir, start_step=start_step, total_steps=train_steps,
                                           progress=progress)
        log.info("mesh %s, rules %d, peak %s FLOP/s (%s)", dict(part.mesh.shape), len(part.rules), peak, peak_source)
        try:
            with PreemptionWatch(**preemption) as watch:  # SIGTERM & co. -> save the step reached, Preempted (143)
                result = _loop(
                    trainer=trainer, state=state, stream=stream, evals=evals, first_batches=first_batches, ckpt=ckpt,
                    logger=logger, start_step=start_step, restored_from=restored_from, train_steps=train_steps,
                    batch_size=batch_size, length=length, checkpoint_period=checkpoint_period, log_period=log_period,
                    eval_period=eval_period, eval_batches=eval_batches, eval_callback=eval_callback,
                    on_nonfinite=on_nonfinite,
                    max_consecutive_nonfinite=max_consecutive_nonfinite, max_nonfinite_fraction=max_nonfinite_fraction,
                    flops_per_step=flops_per_step, peak=peak, written_config=written_config, model_dir=model_dir,
                    set_aside=set_aside, start_warnings=start_warnings, watch=watch, run_shape=run_shape,
                    eval_due=bool(found is not None and data_state.get(EVAL_DUE_KEY)))
        except Preempted as stop:
            if launch is not None:
                run_record.end_launch(model_dir, launch, data=describe_stream(stream), final_step=stop.step)
            raise
        if launch is not None:
            run_record.end_launch(model_dir, launch, data=describe_stream(stream), final_step=result.final_step)
    finally:
        if ckpt is not None:
            ckpt.close()
        if logger is not None:
            logger.close()
        lock.release()
    return result


def _loop(*, trainer, state, stream, evals, first_batches, ckpt, logger, start_step, restored_from, train_steps,
          batch_size, length, checkpoint_period, log_period, eval_period, eval_batches, eval_callback, on_nonfinite,
          max_consecutive_nonfinite, max_nonfinite_fraction, flops_per_step, peak, written_config, model_dir,
          set_aside, start_warnings, watch, run_shape, eval_due) -> TrainResult:
    history: list[dict] = []
    pending: list[tuple[int, Any]] = []
    last_saved = restored_from
    # Step time = wall time since the last flush, less the evaluations and saves in it, over the steps in it.
    clock = {"t": time.perf_counter(), "steps": 0, "other": 0.0}
    skip_cap = max(int(max_consecutive_nonfinite), math.ceil(max_nonfinite_fraction * train_steps))
    skipped = {"run": [], "total": logger.prior_nonfinite, "consecutive": 0}

    def data_state(next_step: int, eval_due: bool = False) -> dict:
        extra = stream.state() if hasattr(stream, "state") else {}
        due = {EVAL_DUE_KEY: True} if eval_due else {}
        return {"step": int(next_step), "examples": int(next_step) * batch_size, **run_shape, "stream": extra, **due}

    def is_eval_step(at: int) -> bool:
        return bool(eval_period) and at % eval_period == 0 and at != train_steps

    def flush(keep_newest: bool) -> None:
        """Fetch queued step metrics, stop on non-finite ones (or past the skip cap), log them."""
        ready = pending[:-1] if keep_newest else pending[:]
        if not ready:
            return
        del pending[: len(ready)]
        fetched = jax.device_get([m for _, m in ready])
        elapsed = max(time.perf_counter() - clock["t"] - clock["other"], 1e-9)
        per_step = elapsed / max(clock["steps"], 1)
        clock["t"], clock["steps"], clock["other"] = time.perf_counter(), len(pending), 0.0
        for (step, _), m in zip(ready, fetched):
            bad = bool(int(m["nonfinite"]))
            if bad and on_nonfinite == "stop":
                raise NonFiniteError(
                    f"step {step}: non-finite loss ({float(m['loss'])}) or gradient norm ({float(m['grad_norm'])}); "
                    f"stopping. {_last_good(last_saved, ckpt.directory)} "
                    "Set train.on_nonfinite = 'skip' to skip such steps instead.")
            record = {k: float(v) for k, v in m.items()}
            record["nonfinite"] = int(m["nonfinite"])
            record["step_time_s"] = per_step
            record["tokens_per_second"] = batch_size * length / per_step
            record["target_tokens_per_second"] = record["label_tokens"] / per_step
            record["mfu"] = flops_per_step / per_step / peak if peak else float("nan")
            logger.log(step, record)
            history.append({"step": step, **record})
            if not bad:
                skipped["consecutive"] = 0
                continue
            skipped["run"].append(step)
            skipped["total"] += 1
            skipped["consecutive"] += 1
            if skipped["consecutive"] > max_consecutive_nonfinite or skipped["total"] > skip_cap:
                logger.flush()
                why = (f"{skipped['consecutive']} consecutive non-finite steps (cap "
                       f"train.max_consecutive_nonfinite = {max_consecutive_nonfinite})"
                       if skipped["consecutive"] > max_consecutive_nonfinite else
                       f"{skipped['total']} non-finite steps in all (cap max(max_consecutive_nonfinite, "
                       f"max_nonfinite_fraction = {max_nonfinite_fraction} x {train_steps} steps) = {skip_cap})")
                raise NonFiniteError(
                    f"step {step}: ON_NONFINITE = 'skip' stopped after {why}; skipped steps this run: "
                    f"{step_ranges(skipped['run'])}. {_last_good(last_saved, ckpt.directory)}")
        logger.progress(ready[-1][0] + 1, history[-1]["loss"] if history else None)
        logger.flush()

    def run_eval_callback(at_step: int) -> None:
        if eval_callback is None:
            return
        # Multi-process: every process calls it (SPMD over the training mesh; see evaluation.hooks.params_mesh).
        eval_callbacks_results[at_step] = eval_callback(written_config, state.params, at_step, model_dir)

    def run_periodic_eval(at: int) -> None:
        began = time.perf_counter()
        if evals:
            for split, r in _evaluate(trainer, state.params, evals, eval_batches, batch_size).items():
                logger.log(at, r, split=f"eval_{split}")
        run_eval_callback(at)
        clock["other"] += time.perf_counter() - began  # not the steps' time (their step_time_s, tokens/s, MFU)

    eval_callbacks_results: dict[int, dict] = {}
    step = start_step
    if start_step == 0:
        run_eval_callback(0)  # the model before training: the baseline of the final report
    elif eval_due and is_eval_step(start_step):
        # A preemption stopped the last run on this EVAL_PERIOD step: it saved first and left the evaluation of
        # that step to the resumed run (a grace period is for the save), which runs it now, on the same params.
        log.info("running the evaluation of step %d, left by the preempted run", start_step)
        run_periodic_eval(start_step)
    for step in range(start_step, train_steps):
        local = first_batches.pop(step) if step in first_batches else stream.get_batch(step)
        batch = trainer.global_batch(local, batch_size)
        state, m = trainer.train_step(state, batch)
        pending.append((step, m))
        clock["steps"] += 1
        done = step + 1
        save_due = done % max(checkpoint_period, 1) == 0 or done == train_steps
        stop = watch.stop_reason(step) if done < train_steps else None  # the same answer on every process
        if last_saved is not None:
            ckpt.check_for_errors()  # a background save that failed ends the run now, naming path and OS error
        if save_due or stop:
            flush(keep_newest=False)
            if done != last_saved:
                began = time.monotonic()
                ckpt.save(done, state, data_state(done, eval_due=bool(stop) and is_eval_step(done)), force=True)
                clock["other"] += time.monotonic() - began
                # MAX_RUNTIME's margin: the step path's part, or a background save's whole (start to commit)
                watch.save_took(max(time.monotonic() - began, ckpt.slowest_save_s))
                last_saved = done
            if stop:
                ckpt.wait_until_finished()
                raise Preempted(f"{stop}: stopped after step {done} of {train_steps} and saved checkpoint {done} in "
                                f"{ckpt.directory}; rerun the same command to resume", step=done, reason=stop)
        elif done % max(log_period, 1) == 0:
            flush(keep_newest=True)
        if is_eval_step(done):
            run_periodic_eval(done)
    flush(keep_newest=False)
    eval_results = _evaluate(trainer, state.params, evals, eval_batches, batch_size) if evals else {}
    for split, r in eval_results.items():
        logger.log(train_steps, r, split=f"eval_{split}")
    if start_step < train_steps:
        run_eval_callback(train_steps)
    ckpt.wait_until_finished()
    if skipped["total"]:
        log.warning("skipped %d non-finite steps in all (%d by this process: %s)", skipped["total"],
                    len(skipped["run"]), step_ranges(skipped["run"]))
    return TrainResult(model_dir=model_dir, start_step=start_step, final_step=max(step + 1, start_step), state=state,
                       history=history, eval_results=eval_results, task_eval_results=eval_callbacks_results,
                       restored_from=restored_from, skipped_steps=list(skipped["run"]),
                       skipped_total=int(skipped["total"]), set_aside=set_aside, warnings=start_warnings)


def _last_good(last_saved: int | None, directory) -> str:
    if last_saved is None:
        return f"No checkpoint was saved yet in {directory}: a rerun starts from step 0."
    return f"The last good checkpoint (step {last_saved}) in {directory} is untouched."


def step_ranges(steps: list[int]) -> str:
    """[3, 4, 5, 9] -> '3-5, 9'."""
    if not steps:
        return "none"
    out, start, prev = [], steps[0], steps[0]
    for s in steps[1:] + [None]:
        if s is not None and s == prev + 1:
            prev = s
            continue
        out.append(str(start) if start == prev else f"{start}-{prev}")
        if s is not None:
            start = prev = s
    return ", ".join(out)


def summarize_eval(results: dict[str, dict]) -> str:
    """A short table of eval loss per split (the quickstart's report until the evaluation helper lands)."""
    if not results:
        return "(no eval splits configured)"
    width = max(len(s) for s in results)
    lines = [f"{'split':<{width}}  {'loss':>8}  {'tok_acc':>8}  {'label_tokens':>12}"]
    for split, r in results.items():
        lines.append(f"{split:<{width}}  {r['loss']:8.4f}  {r['token_accuracy']:8.4f}  {int(r['label_tokens']):12d}")
    return "\n".join(lines)

