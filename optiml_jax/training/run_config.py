"""The run, described by five frozen dataclasses that `train()` takes (with the model's own `ModelConfig`).

Why typed configs: a run has ~40 settings. As loose keyword arguments each one was checked somewhere in a long
function, and every caller (the CLI, the planner, benchmarks, tests) repeated them. Here each group is one frozen
value, checked once, in full, when it is built (`__post_init__`), before any device work; an error names the gin
macro that set the value and the binding that carries it, e.g.

    BATCH_SIZE (DataConfig.batch_size) = 'eight': must be an integer >= 1 (got str)

gin binds them as T5X's `utils.SaveCheckpointConfig` is bound (gin/runs/train.gin):

    train.data = @DataConfig()
    DataConfig.batch_size = %BATCH_SIZE

and `run_config_record` writes what the run was given into MODEL_DIR/run_config.json. Field names are the gin
parameter names the settings had before (`train.learning_rate` is now `OptimizerConfig.learning_rate`): each is
unique across the five configs, so a field names its setting wherever it appears.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import numbers
import os
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from optiml_jax.models import LlamaConfig, OPTConfig
from optiml_jax.training.errors import ConfigValueError
from optiml_jax.training.partitioning import Partitioner, make_partitioner
from optiml_jax.training.preemption import parse_runtime

NONFINITE_POLICIES = ("stop", "skip")
LR_DECAYS = ("linear", "cosine", "constant")
# field -> the gin macro gin/runs/train.gin binds it to (for messages)
MACRO_OF = {
    "model_dir": "MODEL_DIR", "mixture_or_task_name": "MIXTURE_OR_TASK_NAME",
    "task_feature_lengths": "TASK_FEATURE_LENGTHS", "train_steps": "TRAIN_STEPS", "batch_size": "BATCH_SIZE",
    "learning_rate": "LEARNING_RATE", "warmup_steps": "WARMUP_STEPS", "lr_decay": "LR_DECAY",
    "weight_decay": "WEIGHT_DECAY", "clip_grad_norm": "CLIP_GRAD_NORM", "seed": "SEED",
    "num_microbatches": "NUM_MICROBATCHES", "loss_chunk_size": "LOSS_CHUNK_SIZE",
    "loss_normalization": "LOSS_NORMALIZATION", "checkpoint_period": "CHECKPOINT_PERIOD",
    "keep_checkpoints": "KEEP_CHECKPOINTS", "eval_period": "EVAL_PERIOD", "log_period": "LOG_PERIOD",
    "on_nonfinite": "ON_NONFINITE", "peak_flops": "PEAK_FLOPS", "verify_checkpoints": "VERIFY_CHECKPOINTS",
    "initial_checkpoint_path": "INITIAL_CHECKPOINT_PATH", "max_runtime": "MAX_RUNTIME",
    "checkpoint_writer": "CHECKPOINT_WRITER",
}


class TrainStream(Protocol):
    """What a stream factory returns: the batch of a step (docs/ARCHITECTURE.md "Batch contract"). Optional:
    `state() -> dict` (saved with each checkpoint), `restore(state, step) -> bool` (given it back on resume),
    `get_batch_with_stats(step)` (the first batch's truncation check), `describe() -> dict` (run.json)."""

    def get_batch(self, step: int) -> dict: ...


class StreamFactory(Protocol):
    """`DataConfig.stream_factory` and each of `EvaluationConfig.eval_streams` (the batch size is global; the
    trainer passes this process's rows as shard_index of num_shards)."""

    def __call__(self, *, mixture_or_task_name: str, task_feature_lengths: Mapping[str, int], batch_size: int,
                 seed: int, shard_index: int, num_shards: int) -> TrainStream: ...


class EvalCallback(Protocol):
    """`EvaluationConfig.eval_callback`: task evaluation at a step, on every process (SPMD)."""

    def __call__(self, model_config, params, step: int, model_dir) -> dict: ...


STREAM_FACTORY_KEYWORDS = ("mixture_or_task_name", "task_feature_lengths", "batch_size", "seed", "shard_index",
                           "num_shards")


def _check_call(config, field: str, fn, args: tuple, kwargs: dict, how: str) -> None:
    """A factory or callback that cannot take the trainer's call is refused now, not at its first call."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin without a signature: take it on trust
        return
    try:
        signature.bind(*args, **kwargs)
    except TypeError as e:
        raise ConfigValueError(f"{setting_name(config, field)} = {getattr(fn, '__qualname__', fn)!r} cannot be "
                               f"called as the trainer calls it, {how}: {e}") from None


def setting_name(config: Any, field: str) -> str:
    """'BATCH_SIZE (DataConfig.batch_size)': the macro a user sets and the binding that carries it."""
    binding = f"{_class_name(config)}.{field}"
    macro = MACRO_OF.get(field)
    return f"{macro} ({binding})" if macro else binding


def _class_name(config: Any) -> str:
    for cls in type(config).__mro__:  # gin's external_configurable wraps a class in a subclass of the same name
        if cls in _CONFIG_CLASSES:
            return cls.__name__
    return type(config).__name__


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


class _Checks:
    """The value checks of one config, each error naming its setting."""

    def __init__(self, config):
        self.config = config

    def fail(self, field: str, want: str) -> ConfigValueError:
        value = getattr(self.config, field)
        return ConfigValueError(f"{setting_name(self.config, field)} = {value!r}: must be {want} "
                                f"(got {type(value).__name__})")

    def integer(self, field: str, low: int | None = None, optional: bool = False) -> None:
        v = getattr(self.config, field)
        if optional and v is None:
            return
        if not _is_int(v) or (low is not None and v < low):
            raise self.fail(field, ("None or " if optional else "") + ("an integer" + (f" >= {low}" if low is not None
                                                                                        else "")))

    def number(self, field: str, *, positive: bool = False, optional: bool = False) -> None:
        v = getattr(self.config, field)
        if optional and v is None:
            return
        ok = _is_real(v) and math.isfinite(v) and (v > 0 if positive else v >= 0)
        if not ok:
            raise self.fail(field, ("None or " if optional else "") + ("a number > 0" if positive
                                                                       else "a finite number >= 0"))

    def fraction(self, field: str) -> None:
        v = getattr(self.config, field)
        if not _is_real(v) or not 0 <= v <= 1:
            raise self.fail(field, "a fraction in [0, 1]")

    def one_of(self, field: str, choices: tuple) -> None:
        if getattr(self.config, field) not in choices:
            raise self.fail(field, f"one of {choices}")

    def flag(self, field: str) -> None:
        if not isinstance(getattr(self.config, field), bool):
            raise self.fail(field, "True or False")

    def optional_callable(self, field: str) -> None:
        v = getattr(self.config, field)
        if v is not None and not callable(v):
            raise self.fail(field, "None or a callable (gin: @name)")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """What the run reads: the mixture, the packed row shape and the global batch."""

    mixture_or_task_name: str
    task_feature_lengths: Mapping[str, int]  # packed row length = sum of the values (decoder-only)
    batch_size: int  # global, in sequences
    # a StreamFactory (above): gin/runs/train.gin binds @get_train_stream, smoke_synthetic.gin @synthetic_stream
    stream_factory: StreamFactory | None = None
    max_truncated_fraction: float = 0.1  # warn when more of the first batch's examples are cut to the row length

    def __post_init__(self):
        c = _Checks(self)
        c.integer("batch_size", 1)
        name = self.mixture_or_task_name
        if not isinstance(name, str) or not name:
            raise c.fail("mixture_or_task_name", "a task or mixture name")
        tfl = self.task_feature_lengths
        if not isinstance(tfl, Mapping) or not tfl or not all(_is_int(v) and v > 0 for v in tfl.values()):
            raise ConfigValueError(f"{setting_name(self, 'task_feature_lengths')} = {tfl!r}: must be a mapping of "
                                   "feature name to a positive length, e.g. {'targets': 2048}")
        object.__setattr__(self, "task_feature_lengths", dict(tfl))
        if self.stream_factory is None:
            raise ConfigValueError("DataConfig.stream_factory is unset: bind @get_train_stream (gin/runs/train.gin "
                                   "does), or @synthetic_stream for a smoke run on random tokens")
        c.optional_callable("stream_factory")
        _check_call(self, "stream_factory", self.stream_factory, (), dict.fromkeys(STREAM_FACTORY_KEYWORDS),
                    "factory(" + ", ".join(f"{k}=..." for k in STREAM_FACTORY_KEYWORDS) + ")")
        c.fraction("max_truncated_fraction")

    @property
    def length(self) -> int:
        """The packed row length."""
        return int(sum(self.task_feature_lengths.values()))


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """The update: schedule, AdamW, clipping, and how a step's loss is formed (microbatches, normalization)."""

    train_steps: int
    learning_rate: float = 5e-5
    warmup_steps: int = 60
    lr_decay: str = "linear"  # to end_learning_rate at train_steps
    end_learning_rate: float = 0.0
    adam_b1: float = 0.9
    adam_b2: float = 0.95
    adam_eps: float = 1e-8
    weight_decay: float = 0.0
    clip_grad_norm: float | None = 1.0
    num_microbatches: int = 1
    loss_normalization: Any = "tokens"  # tokens | sequences | segments | a number (training/losses.py)
    # positions per LM-head/loss chunk, without [B, L, vocab] logits (`chunked_cross_entropy`); None = plain logits
    loss_chunk_size: int | None = None

    def __post_init__(self):
        c = _Checks(self)
        c.integer("train_steps", 1)
        c.integer("warmup_steps", 0)
        c.integer("num_microbatches", 1)
        c.integer("loss_chunk_size", 1, optional=True)
        for field in ("learning_rate", "end_learning_rate", "weight_decay", "adam_b1", "adam_b2", "adam_eps"):
            c.number(field)
        c.number("clip_grad_norm", positive=True, optional=True)
        c.one_of("lr_decay", LR_DECAYS)


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
    """Where the run lives and how it is saved and restored."""

    model_dir: str | os.PathLike
    checkpoint_period: int = 1000
    keep_checkpoints: int | None = 3
    async_checkpoints: bool = True
    verify_checkpoints: bool = True  # per-array checksums with every checkpoint, verified on restore
    initial_checkpoint_path: str | None = None  # a run, an Orbax, Hugging Face or metaseq checkpoint
    lock_stale_after_s: float = 600.0  # a run lock older than this (no heartbeat) is taken over
    # who writes a periodic background save: "thread" (the training process) or "process" (an idle-priority
    # worker process, for hosts whose cores run the step: checkpoints/save_process.py; single-process runs)
    checkpoint_writer: str = "thread"

    def __post_init__(self):
        c = _Checks(self)
        if not isinstance(self.model_dir, (str, os.PathLike)) or not os.fspath(self.model_dir):
            raise c.fail("model_dir", "a directory path")
        c.integer("checkpoint_period", 1)
        c.integer("keep_checkpoints", 1, optional=True)
        c.flag("async_checkpoints")
        c.flag("verify_checkpoints")
        path = self.initial_checkpoint_path
        if path is not None and (not isinstance(path, (str, os.PathLike)) or not os.fspath(path)):
            raise c.fail("initial_checkpoint_path", "None or a checkpoint path")
        c.number("lock_stale_after_s", positive=True)
        c.one_of("checkpoint_writer", ("thread", "process"))
        if self.checkpoint_writer == "process" and not self.async_checkpoints:
            raise c.fail("checkpoint_writer", "'thread' when async_checkpoints is False (a worker process writes "
                                              "background saves only)")


@dataclasses.dataclass(frozen=True)
class EvaluationConfig:
    """What is evaluated during the run, and when (before the first step of a fresh run, every `eval_period`
    steps, and at the end)."""

    # split -> stream factory (called as DataConfig.stream_factory is): eval *loss* per split
    eval_streams: Mapping[str, StreamFactory] | None = None
    # eval_callback(model_config, params, step, model_dir) -> results: task evaluation (rank classification /
    # generation: optiml_jax.evaluation.hooks.EvalCallback; a SeqIO task's metric_fns: SeqioEvalCallback; several:
    # CompositeCallback). The trainer never imports the evaluation layer: gin binds the callback.
    eval_callback: EvalCallback | None = None
    eval_period: int = 0  # 0 = only before the first step and at the end
    eval_batches: int = 1  # eval-loss batches per split

    def __post_init__(self):
        c = _Checks(self)
        c.integer("eval_period", 0)
        c.integer("eval_batches", 1)
        c.optional_callable("eval_callback")
        streams = self.eval_streams
        if streams is not None and (not isinstance(streams, Mapping)
                                    or not all(isinstance(k, str) and callable(v) for k, v in streams.items())):
            raise c.fail("eval_streams", "None or a mapping of split name to a stream factory")
        for factory in (streams or {}).values():
            _check_call(self, "eval_streams", factory, (), dict.fromkeys(STREAM_FACTORY_KEYWORDS),
                        "like DataConfig.stream_factory")
        if self.eval_callback is not None:
            _check_call(self, "eval_callback", self.eval_callback, (None, None, 0, None), {},
                        "callback(model_config, params, step, model_dir)")
        object.__setattr__(self, "eval_streams", dict(streams or {}))


@dataclasses.dataclass(frozen=True)
class ExecutionConfig:
    """How the run executes: the mesh, the seed, logging, guardrails and when it stops on its own."""

    partitioner: Partitioner | Callable[[], Partitioner] = make_partitioner  # gin/partitioning/*.gin
    seed: int = 0  # init, dropout keys and data order all derive from it
    log_period: int = 1
    progress: bool = True  # a tqdm bar on process 0
    peak_flops: float | None = None  # whole-job peak for MFU; None = the device table, or measured (CPU)
    # 'stop' ends the run at the first non-finite loss or gradient norm; 'skip' keeps the previous parameters and
    # goes on, until more than max_consecutive_nonfinite steps in a row, or in all more than
    # max(max_consecutive_nonfinite, ceil(max_nonfinite_fraction * train_steps)) steps (counting the ones
    # train.jsonl records from before a restart), were skipped: then it stops like 'stop'.
    on_nonfinite: str = "stop"
    max_consecutive_nonfinite: int = 10
    max_nonfinite_fraction: float = 0.01
    # SIGTERM/SIGINT/SIGUSR1, or max_runtime (seconds, '2h30m', '04:00:00') less max_runtime_margin_s and the
    # slowest step and save, end the run at one step all processes agree on (checked every
    # preemption_check_period steps) after saving it: `Preempted` (exit 143; training/preemption.py).
    max_runtime: float | str | None = None
    max_runtime_margin_s: float = 30.0
    preemption_check_period: int = 1

    def __post_init__(self):
        c = _Checks(self)
        if not isinstance(self.partitioner, Partitioner) and not callable(self.partitioner):
            raise c.fail("partitioner", "a Partitioner or a callable returning one (gin: @make_partitioner)")
        c.integer("seed")
        c.integer("log_period", 1)
        c.flag("progress")
        c.number("peak_flops", positive=True, optional=True)
        c.one_of("on_nonfinite", NONFINITE_POLICIES)
        c.integer("max_consecutive_nonfinite", 0)
        c.fraction("max_nonfinite_fraction")
        try:
            parse_runtime(self.max_runtime)
        except ValueError as e:
            raise ConfigValueError(f"{e} ({_class_name(self)}.max_runtime)") from None
        c.number("max_runtime_margin_s")
        c.integer("preemption_check_period", 1)

    @property
    def max_runtime_s(self) -> float | None:
        return parse_runtime(self.max_runtime)

    def make_partitioner(self) -> Partitioner:
        part = self.partitioner
        return part if isinstance(part, Partitioner) else part()


_CONFIG_CLASSES = (DataConfig, OptimizerConfig, CheckpointConfig, EvaluationConfig, ExecutionConfig)


def check_together(model_config, data: DataConfig, optimizer: OptimizerConfig) -> None:
    """The checks that span two configs (each config checked itself when it was built)."""
    if not isinstance(model_config, (OPTConfig, LlamaConfig)):
        raise ConfigValueError(f"train.model_config = {model_config!r}: must be an OPTConfig or LlamaConfig (gin: "
                               "train.model_config = @opt_config() or @llama_config()) (got "
                               f"{type(model_config).__name__})")
    if data.batch_size % optimizer.num_microbatches:
        raise ConfigValueError(f"BATCH_SIZE = {data.batch_size} is not divisible by NUM_MICROBATCHES = "
                               f"{optimizer.num_microbatches}")


def _jsonable(value):
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Partitioner):
        return {"mesh": {str(k): int(v) for k, v in value.mesh.shape.items()}, "rules": len(value.rules)}
    target = getattr(value, "func", value)  # functools.partial and gin's wrappers keep the function in .func
    name = getattr(target, "__qualname__", None) or type(target).__qualname__
    return f"{getattr(target, '__module__', type(target).__module__)}.{name}"


def run_config_record(**configs) -> dict:
    """What MODEL_DIR/run_config.json holds: every field of every config (callables by their import name)."""
    out = {}
    for key, config in configs.items():
        if dataclasses.is_dataclass(config):
            out[key] = {f.name: _jsonable(getattr(config, f.name)) for f in dataclasses.fields(config)}
        else:
            out[key] = _jsonable(config)
    return out
