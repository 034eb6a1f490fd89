"""`train()`: the T5X-style training run. It takes typed configs (training/run_config.py) that gin binds
(gin/runs/train.gin); it does not import gin itself.

Start-up order: every config checked itself when it was built -> mesh + rules -> optimizer and the jitted steps
(`build_trainer`) -> this process's data stream (an unknown MIXTURE_OR_TASK_NAME is one line with the closest
registered names) and its first batch (a TASK_FEATURE_LENGTHS that truncates most examples warns, one that truncates
all is an error; training/run_data.py) -> only then MODEL_DIR: the run lock (a second trainer refuses to start),
writability and free space of MODEL_DIR and checkpoints/ -> state (the newest *intact* checkpoint in MODEL_DIR if
any: damaged ones are reported, moved aside and skipped; else parameters from INITIAL_CHECKPOINT_PATH, else random
init) -> model_config.json and run_config.json -> metrics files cut back to the restored step -> the step loop
(training/step_loop.py). A configuration error therefore creates nothing.
Restarting is running the same command again: the step stored in the checkpoint is the data position
(the stream is step-indexed) and dropout keys derive from the step, so every later step is identical.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from optiml_jax.models import ModelConfig
from optiml_jax.paths import reachable_user_path
from optiml_jax.checkpoints import training_runs as checkpointing
from optiml_jax.training import metrics as metrics_lib, run_record, train_state
from optiml_jax.checkpoints.errors import StorageError
from optiml_jax.training.errors import NonFiniteError, RunLockedError
from optiml_jax.training.model_config import (check_matches_checkpoint, check_same_architecture, check_vocabulary_fits,
                                              with_vocabulary_ids)
from optiml_jax.training.optimizer import make_optimizer, make_schedule
from optiml_jax.training.partitioning import Partitioner
from optiml_jax.training.preemption import Preempted, PreemptionWatch
from optiml_jax.training.resume_checks import check_resume, mesh_fit_error
from optiml_jax.training.run_config import (CheckpointConfig, DataConfig, EvaluationConfig, ExecutionConfig,
                                            OptimizerConfig, check_together, run_config_record)
from optiml_jax.training.run_data import RunData, check_batch_splits, describe_stream, open_run_data
from optiml_jax.training.run_dir import RunLock, check_storage
from optiml_jax.training.step_loop import EVAL_DUE_KEY, LoopStart, StepLoop, TrainResult, step_ranges
from optiml_jax.training.trainer import Trainer

log = logging.getLogger(__name__)
RUN_CONFIG_FILE = "run_config.json"  # in MODEL_DIR: every config the newest launch was given
__all__ = ["NonFiniteError", "TrainResult", "train", "build_trainer", "step_ranges", "summarize_eval"]


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



def _every_process(ok: bool) -> bool:
    if jax.process_count() == 1:
        return ok
    from jax.experimental import multihost_utils

    return bool(np.all(multihost_utils.process_allgather(np.asarray([int(ok)], np.int32))))


def _agree(error: Exception | None, elsewhere: Exception) -> None:
    """Raise on every process when any failed: its own error where it failed, `elsewhere` on the others."""
    if not _every_process(error is None):
        raise error if error is not None else elsewhere


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


def build_trainer(*, model_config: ModelConfig, partitioner: Partitioner | Callable[[], Partitioner],
                  optimizer: OptimizerConfig, seed: int = 0) -> TrainerSetup:
    """Mesh, schedule, optimizer, shardings and the jitted steps of a run.

    Why a separate function: `optiml_jax.plan` lowers and compiles the very train step `train()` runs (on
    abstract shapes, for a pod it does not have); both build it here, so they cannot drift apart.
    """
    part = partitioner if isinstance(partitioner, Partitioner) else partitioner()
    o = optimizer
    schedule = make_schedule(o.learning_rate, o.warmup_steps, o.train_steps, o.lr_decay, o.end_learning_rate)
    tx = make_optimizer(schedule, o.adam_b1, o.adam_b2, o.adam_eps, o.weight_decay, clip_grad_norm=o.clip_grad_norm)
    written_config = model_config  # what model_config.json records: the architecture, not this mesh's kernel name
    model_config = model_config.replace(attention_backend=part.attention_backend_for(model_config.attention_backend))
    mesh_fit_error(model_config, tx, part)  # before any checkpoint is read: a restore would call them damaged
    shardings = train_state.state_shardings(model_config, tx, part)
    trainer = Trainer(model_config, tx, schedule, part, shardings, seed=seed, num_microbatches=o.num_microbatches,
                      loss_normalization=o.loss_normalization, loss_chunk_size=o.loss_chunk_size)
    return TrainerSetup(part, schedule, tx, written_config, model_config, shardings, trainer)


def train(*, model_config: ModelConfig, data: DataConfig, optimizer: OptimizerConfig, checkpoint: CheckpointConfig,
          evaluation: EvaluationConfig = EvaluationConfig(), execution: ExecutionConfig = ExecutionConfig(),
          setup_callback: Callable[[pathlib.Path], None] | None = None,
          model_config_origin: str = "train.model_config") -> TrainResult:
    """Train `model_config` on `data` for `optimizer.train_steps` steps; see the configs' docstrings for each
    setting. `setup_callback(model_dir)` runs on process 0 once MODEL_DIR is claimed (the CLI writes its gin configs
    there). `model_config_origin` names where `model_config` was set (the CLI passes the model file), for the error
    when it disagrees with the initial checkpoint's recorded config."""
    check_together(model_config, data, optimizer)
    model_dir = checkpointing.orbax_dir_path(checkpoint.model_dir, "MODEL_DIR")  # a URL stays a URL (optiml_jax.paths)
    initial = reachable_user_path(checkpoint.initial_checkpoint_path, "INITIAL_CHECKPOINT_PATH")
    check_matches_checkpoint(model_config, initial, model_config_origin)  # JSON only, before MODEL_DIR
    part = execution.make_partitioner()
    check_batch_splits(part, data.batch_size)
    _check_writer(checkpoint)
    setup = build_trainer(model_config=model_config, partitioner=part, optimizer=optimizer, seed=execution.seed)
    # The data, before anything is written: a wrong name or length stops here and MODEL_DIR stays untouched.
    run_data = open_run_data(data, evaluation, part=part, seed=execution.seed, model_dir=model_dir,
                             check_vocabulary=lambda s: check_vocabulary_fits(s, setup.model_config,
                                                                              data.mixture_or_task_name))
    setup = dataclasses.replace(setup, written_config=with_vocabulary_ids(setup.written_config, run_data.stream))
    configs = dict(model_config=setup.written_config, data=data, optimizer=optimizer, checkpoint=checkpoint,
                   evaluation=evaluation, execution=execution)
    lock = _lock_model_dir(model_dir, checkpoint.lock_stale_after_s)
    ckpt = logger = None
    try:
        ckpt, start = _claim_and_restore(model_dir, initial, setup, run_data, configs)
        if setup_callback is not None and jax.process_index() == 0:
            setup_callback(model_dir)
        logger = metrics_lib.MetricsLogger(model_dir, start_step=start.start_step, total_steps=optimizer.train_steps,
                                           progress=execution.progress)
        return _run_loop(model_dir, setup, run_data, ckpt, logger, start, configs)
    finally:
        if ckpt is not None:
            ckpt.close()
        if logger is not None:
            logger.close()
        lock.release()


def _lock_model_dir(model_dir, stale_after_s: float) -> RunLock:
    """MODEL_DIR/run.lock, taken by process 0; every process learns whether it was."""
    lock = RunLock(model_dir, stale_after_s=stale_after_s)
    error = None
    if jax.process_index() == 0:
        try:
            lock.acquire()
        except Exception as e:  # noqa: BLE001 (re-raised below, after every process learned the outcome)
            error = e
    if not _every_process(error is None):
        lock.release()
        raise error if error is not None else RunLockedError(f"process 0 could not take the run lock of {model_dir} "
                                                             "(see its log)")
    return lock


def _check_writer(checkpoint: CheckpointConfig) -> None:
    if checkpoint.checkpoint_writer == "process" and jax.process_count() > 1:
        from optiml_jax.training.errors import ConfigValueError
        from optiml_jax.training.run_config import setting_name

        raise ConfigValueError(f"{setting_name(checkpoint, 'checkpoint_writer')} = 'process': single-process runs "
                               f"only (this run has {jax.process_count()} processes); use 'thread'")


def _claim_and_restore(model_dir, initial, setup: TrainerSetup, run_data: RunData, configs: dict):
    """Check MODEL_DIR can take checkpoints, restore the newest intact one (or start from `initial` or random
    init), then write model_config.json and run_config.json: a refused resume leaves MODEL_DIR as it was."""
    data, checkpoint, seed = configs["data"], configs["checkpoint"], configs["execution"].seed
    model_config, tx, part = setup.model_config, setup.tx, setup.partitioner
    abstract = train_state.abstract_state(model_config, tx, part)
    checkpoint_bytes = sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(abstract))
    warnings, error = list(run_data.warnings), None
    try:
        warnings += check_storage(model_dir, model_dir / checkpointing.CHECKPOINT_SUBDIR,
                                  checkpoint_bytes=checkpoint_bytes, keep=checkpoint.keep_checkpoints,
                                  process_index=jax.process_index())
    except Exception as e:  # noqa: BLE001
        error = e
    _agree(error, StorageError(f"{model_dir}: another process found MODEL_DIR or checkpoints/ unwritable (see its log)"))
    ckpt = checkpointing.TrainCheckpointManager(model_dir, period=checkpoint.checkpoint_period,
                                                keep=checkpoint.keep_checkpoints,
                                                async_save=checkpoint.async_checkpoints,
                                                verify=checkpoint.verify_checkpoints,
                                                writer=checkpoint.checkpoint_writer)
    found = ckpt.restore_latest_intact(abstract)  # another model: refused here, before model_config.json
    if found is not None:
        state, data_state, start_step, set_aside = found
        warnings += check_resume(data_state, run_shape(data, configs["optimizer"]), start_step, ckpt.directory)
        stream = run_data.stream
        if hasattr(stream, "restore") and not stream.restore(data_state.get("stream"), start_step):
            log.warning("checkpoint step %d has no stream state for this stream; its batches are replayed "
                        "from step 0 (the same batches, computed more slowly)", start_step)
        log.info("restored %s step %d (data position %s)", ckpt.directory, start_step,
                 {k: v for k, v in data_state.items() if k != "stream"})
        start = LoopStart(state, start_step, start_step, bool(data_state.get(EVAL_DUE_KEY)), set_aside, warnings)
    else:
        state = (_load_initial_state(initial, model_config, tx, part) if initial
                 else train_state.init_state(model_config, tx, part, seed))
        start = LoopStart(state, 0, None, False, [], warnings)
    if jax.process_index() == 0:  # only now: a refused resume leaves MODEL_DIR as it was
        (model_dir / "model_config.json").write_text(setup.written_config.to_json())
        (model_dir / RUN_CONFIG_FILE).write_text(json.dumps(run_config_record(**configs), indent=1) + "\n")
    ckpt.prepare(start.state)  # the background save's host copy is compiled here, not in the first save's step
    return ckpt, start


def run_shape(data: DataConfig, optimizer: OptimizerConfig) -> dict:
    """Saved with the data position of every checkpoint; a resume compares it (training/resume_checks.py)."""
    return {"batch_size": data.batch_size, "task_feature_lengths": dict(data.task_feature_lengths),
            "train_steps": optimizer.train_steps}


def _run_loop(model_dir, setup: TrainerSetup, run_data: RunData, ckpt, logger, start: LoopStart,
              configs: dict) -> TrainResult:
    data, optimizer, execution = configs["data"], configs["optimizer"], configs["execution"]
    launch = None
    if jax.process_index() == 0:
        run_record.keep_tokenizer(model_dir, run_data.record)
        launch = run_record.start_launch(
            model_dir, data=run_data.record, start_step=start.start_step, process_count=jax.process_count(),
            settings={"mixture_or_task_name": data.mixture_or_task_name,
                      "task_feature_lengths": dict(data.task_feature_lengths), "batch_size": data.batch_size,
                      "train_steps": optimizer.train_steps, "seed": execution.seed,
                      "initial_checkpoint_path": configs["checkpoint"].initial_checkpoint_path,
                      "model": json.loads(setup.written_config.to_json())})
    peak, peak_source = metrics_lib.job_peak_flops(execution.peak_flops)
    flops_per_step = metrics_lib.flops_per_token(setup.model_config, data.length) * data.batch_size * data.length
    part = setup.partitioner
    log.info("mesh %s, rules %d, peak %s FLOP/s (%s)", dict(part.mesh.shape), len(part.rules), peak, peak_source)
    final_step = None
    try:
        with PreemptionWatch(max_runtime_s=execution.max_runtime_s, margin_s=execution.max_runtime_margin_s,
                             check_period=execution.preemption_check_period) as watch:  # SIGTERM & co. -> exit 143
            loop = StepLoop(trainer=setup.trainer, stream=run_data.stream, evals=run_data.evals,
                            first_batches=run_data.first_batches, ckpt=ckpt, logger=logger, watch=watch,
                            written_config=setup.written_config, model_dir=model_dir,
                            run_shape=run_shape(data, optimizer), flops_per_step=flops_per_step, peak=peak,
                            start=start, **{k: v for k, v in configs.items() if k != "model_config"})
            result = loop.run()
        final_step = result.final_step
        return result
    except Preempted as stop:
        final_step = stop.step
        raise
    finally:
        if launch is not None and final_step is not None:
            run_record.end_launch(model_dir, launch, data=describe_stream(run_data.stream), final_step=final_step)


def summarize_eval(results: dict[str, dict]) -> str:
    """A short table of eval loss per split (the quickstart's report until the evaluation helper lands)."""
    if not results:
        return "(no eval splits configured)"
    width = max(len(s) for s in results)
    lines = [f"{'split':<{width}}  {'loss':>8}  {'tok_acc':>8}  {'label_tokens':>12}"]
    for split, r in results.items():
        lines.append(f"{split:<{width}}  {r['loss']:8.4f}  {r['token_accuracy']:8.4f}  {int(r['label_tokens']):12d}")
    return "\n".join(lines)
