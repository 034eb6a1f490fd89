"""`train()`: the T5X-style training run (gin binds its arguments; it does not import gin itself).

Start-up order: mesh + rules -> optimizer -> state (restore the latest checkpoint in MODEL_DIR if any,
else parameters from INITIAL_CHECKPOINT_PATH, else random init) -> this process's data shard -> loop.
Restarting is running the same command again: the step stored in the checkpoint is the data position
(the stream is step-indexed) and dropout keys derive from the step, so every later step is identical.

Stream factories (the `stream_factory` / `eval_streams` callables) are called as
    factory(mixture_or_task_name=..., task_feature_lengths=..., batch_size=<global>, seed=...,
            shard_index=..., num_shards=...)
and return an object with `get_batch(step)` (docs/ARCHITECTURE.md "Batch contract") and optionally
`state() -> dict` (stored with each checkpoint).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
import time
from collections.abc import Callable
from typing import Any

import jax

from optiml_jax.models import OPTConfig
from optiml_jax.training import checkpointing, metrics as metrics_lib, train_state
from optiml_jax.training.model_config import check_same_architecture
from optiml_jax.training.optimizer import make_optimizer, make_schedule
from optiml_jax.training.partitioning import Partitioner, make_partitioner
from optiml_jax.training.synthetic_data import synthetic_stream
from optiml_jax.training.trainer import Trainer, process_batch_slice

log = logging.getLogger(__name__)
NONFINITE_POLICIES = ("stop", "skip")


class NonFiniteError(RuntimeError):
    """A step produced a non-finite loss or gradient norm and the run was configured to stop."""


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


def _load_initial_state(path, config, tx, partitioner) -> Any:
    """Fresh optimizer state around parameters from one of our runs or a converted/HF directory."""
    path = pathlib.Path(path)
    if checkpointing.is_training_run_dir(path) or path.parent.name == checkpointing.CHECKPOINT_SUBDIR:
        run_dir = path if checkpointing.is_training_run_dir(path) else path.parent.parent
        saved = run_dir / "model_config.json"
        if saved.is_file():
            check_same_architecture(config, OPTConfig.from_dict(json.loads(saved.read_text())), str(path))
        target = train_state.abstract_state(config, tx, partitioner).params
        params, step = checkpointing.restore_params_from_run(path, target)
        log.info("initial parameters from training run %s step %d", run_dir, step)
        return train_state.state_from_params(config, tx, partitioner, jax.device_get(params))
    from optiml_jax.convert import load_params  # Orbax params dir of the converter, or a Hugging Face dir

    found, params = load_params(path, scanned=config.scan_layers)
    check_same_architecture(config, found, str(path))
    log.info("initial parameters from %s", path)
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


@dataclasses.dataclass
class TrainerSetup:
    """Everything `train()` builds before touching data or checkpoints (`build_trainer`)."""

    partitioner: Partitioner
    schedule: Any
    tx: Any
    written_config: OPTConfig  # the architecture as configured (what model_config.json records)
    model_config: OPTConfig  # the same with this mesh's attention backend name
    shardings: Any  # TrainState-shaped NamedShardings
    trainer: Trainer


def build_trainer(*, model_config: OPTConfig, partitioner: Partitioner | Callable[[], Partitioner], train_steps: int,
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
    model_config: OPTConfig,
    stream_factory: Callable = synthetic_stream,
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
    initial_checkpoint_path: str | None = None,
    eval_streams: dict[str, Callable] | None = None,
    eval_callback: Callable[[OPTConfig, Any, int, pathlib.Path], dict] | None = None,
    eval_period: int = 0,
    eval_batches: int = 1,
    log_period: int = 1,
    on_nonfinite: str = "stop",
    peak_flops: float | None = None,
    progress: bool = True,
    setup_callback: Callable[[pathlib.Path], None] | None = None,
) -> TrainResult:
    """Train `model_config` on the mixture for `train_steps` steps of `batch_size` sequences.

    `task_feature_lengths` gives the packed row length (sum of its values, decoder-only).
    `loss_chunk_size` computes the LM head and loss that many positions at a time, without [B, L, vocab]
    logits (`chunked_cross_entropy`); None = plain logits.
    `eval_streams` give eval *loss* per split; `eval_callback(config, params, step, model_dir)` runs task
    evaluation (rank classification / generation, e.g. `optiml_jax.evaluation.hooks.EvalCallback`) before the
    first step of a fresh run, every `eval_period` steps and at the end. The trainer never imports the
    evaluation layer: gin binds the callback.
    """
    if on_nonfinite not in NONFINITE_POLICIES:
        raise ValueError(f"on_nonfinite={on_nonfinite!r} is not one of {NONFINITE_POLICIES}")
    model_dir = pathlib.Path(model_dir).absolute()
    length = int(sum(task_feature_lengths.values()))
    setup = build_trainer(
        model_config=model_config, partitioner=partitioner, train_steps=train_steps, learning_rate=learning_rate,
        warmup_steps=warmup_steps, lr_decay=lr_decay, end_learning_rate=end_learning_rate, adam_b1=adam_b1,
        adam_b2=adam_b2, adam_eps=adam_eps, weight_decay=weight_decay, clip_grad_norm=clip_grad_norm, seed=seed,
        num_microbatches=num_microbatches, loss_normalization=loss_normalization, loss_chunk_size=loss_chunk_size)
    part, schedule, tx, trainer = setup.partitioner, setup.schedule, setup.tx, setup.trainer
    written_config, model_config = setup.written_config, setup.model_config

    if jax.process_index() == 0:
        model_dir.mkdir(parents=True, exist_ok=True)
        (model_dir / "model_config.json").write_text(written_config.to_json())
    ckpt = checkpointing.TrainCheckpointManager(model_dir, period=checkpoint_period, keep=keep_checkpoints,
                                                async_save=async_checkpoints)
    restored_from = ckpt.latest_step()
    if restored_from is not None:
        state, data_state, start_step = ckpt.restore(train_state.abstract_state(model_config, tx, part))
        log.info("restored %s step %d (data position %s)", ckpt.directory, start_step, data_state)
    elif initial_checkpoint_path:
        state, start_step = _load_initial_state(initial_checkpoint_path, model_config, tx, part), 0
    else:
        state, start_step = train_state.init_state(model_config, tx, part, seed), 0

    shard_index, num_shards = process_batch_slice(part, batch_size, length)
    stream_kwargs = dict(mixture_or_task_name=mixture_or_task_name, task_feature_lengths=task_feature_lengths,
                         batch_size=batch_size, shard_index=shard_index, num_shards=num_shards)
    stream = stream_factory(seed=seed, **stream_kwargs)
    log.info("process %d of %d feeds data shard %d of %d", jax.process_index(), jax.process_count(), shard_index,
             num_shards)
    evals = {split: f(seed=seed + 1, **stream_kwargs) for split, f in (eval_streams or {}).items()}
    if setup_callback is not None and jax.process_index() == 0:
        setup_callback(model_dir)

    peak, peak_source = metrics_lib.job_peak_flops(peak_flops)
    flops_per_step = metrics_lib.flops_per_token(model_config, length) * batch_size * length
    logger = metrics_lib.MetricsLogger(model_dir, start_step=start_step, total_steps=train_steps, progress=progress)
    log.info("mesh %s, rules %d, peak %s FLOP/s (%s)", dict(part.mesh.shape), len(part.rules), peak, peak_source)
    history: list[dict] = []
    pending: list[tuple[int, Any]] = []
    last_saved = restored_from
    clock = {"t": time.perf_counter(), "steps": 0}

    def data_state(next_step: int) -> dict:
        extra = stream.state() if hasattr(stream, "state") else {}
        return {"step": int(next_step), "stream": extra}

    def flush(keep_newest: bool) -> None:
        """Fetch queued step metrics, stop on non-finite ones, log them."""
        ready = pending[:-1] if keep_newest else pending[:]
        if not ready:
            return
        del pending[: len(ready)]
        fetched = jax.device_get([m for _, m in ready])
        elapsed = time.perf_counter() - clock["t"]
        per_step = elapsed / max(clock["steps"], 1)
        clock["t"], clock["steps"] = time.perf_counter(), len(pending)
        for (step, _), m in zip(ready, fetched):
            if int(m["nonfinite"]) and on_nonfinite == "stop":
                raise NonFiniteError(
                    f"step {step}: non-finite loss ({float(m['loss'])}) or gradient norm ({float(m['grad_norm'])}); "
                    f"stopping. The last good checkpoint (step {last_saved}) in {ckpt.directory} is untouched. "
                    "Set train.on_nonfinite = 'skip' to skip such steps instead.")
            record = {k: float(v) for k, v in m.items()}
            record["nonfinite"] = int(m["nonfinite"])
            record["step_time_s"] = per_step
            record["tokens_per_second"] = batch_size * length / per_step
            record["target_tokens_per_second"] = record["label_tokens"] / per_step
            record["mfu"] = flops_per_step / per_step / peak if peak else float("nan")
            logger.log(step, record)
            history.append({"step": step, **record})
        logger.progress(ready[-1][0] + 1, history[-1]["loss"] if history else None)
        logger.flush()

    def run_eval_callback(at_step: int) -> None:
        if eval_callback is None:
            return
        # Multi-process: every process calls it (SPMD over the training mesh; see evaluation.hooks.params_mesh).
        eval_callbacks_results[at_step] = eval_callback(written_config, state.params, at_step, model_dir)

    eval_callbacks_results: dict[int, dict] = {}
    step = start_step
    try:
        if start_step == 0:
            run_eval_callback(0)  # the model before training: the baseline of the final report
        for step in range(start_step, train_steps):
            batch = trainer.global_batch(stream.get_batch(step), batch_size)
            state, m = trainer.train_step(state, batch)
            pending.append((step, m))
            clock["steps"] += 1
            done = step + 1
            save_due = done % max(checkpoint_period, 1) == 0 or done == train_steps
            if save_due:
                flush(keep_newest=False)
                if done != last_saved:
                    ckpt.save(done, state, data_state(done), force=True)
                    last_saved = done
            elif done % max(log_period, 1) == 0:
                flush(keep_newest=True)
            if eval_period and evals and done % eval_period == 0 and done != train_steps:
                for split, r in _evaluate(trainer, state.params, evals, eval_batches, batch_size).items():
                    logger.log(done, r, split=f"eval_{split}")
            if eval_period and done % eval_period == 0 and done != train_steps:
                run_eval_callback(done)
        flush(keep_newest=False)
        eval_results = _evaluate(trainer, state.params, evals, eval_batches, batch_size) if evals else {}
        for split, r in eval_results.items():
            logger.log(train_steps, r, split=f"eval_{split}")
        if start_step < train_steps:
            run_eval_callback(train_steps)
        ckpt.wait_until_finished()
    finally:
        ckpt.close()
        logger.close()
    return TrainResult(model_dir=model_dir, start_step=start_step, final_step=max(step + 1, start_step), state=state, history=history,
                       eval_results=eval_results, task_eval_results=eval_callbacks_results,
                       restored_from=restored_from)


def summarize_eval(results: dict[str, dict]) -> str:
    """A short table of eval loss per split (the quickstart's report until the evaluation helper lands)."""
    if not results:
        return "(no eval splits configured)"
    width = max(len(s) for s in results)
    lines = [f"{'split':<{width}}  {'loss':>8}  {'tok_acc':>8}  {'label_tokens':>12}"]
    for split, r in results.items():
        lines.append(f"{split:<{width}}  {r['loss']:8.4f}  {r['token_accuracy']:8.4f}  {int(r['label_tokens']):12d}")
    return "\n".join(lines)

