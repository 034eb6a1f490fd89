"""The step loop of a run: train steps, metric flushes, non-finite guardrails, saves, evaluations, preemption.

`train()` (training/train_loop.py) builds everything first (mesh, trainer, data, restored state, logger) and hands
it to `StepLoop.run`; this module owns what happens between the first and the last step. Why a class: the loop's
pieces (the flush of queued metrics, a save, a periodic evaluation) share the run's state, and as closures inside
one function they made a 130-line function that nobody could read in one screen.

Step metrics are queued on device and fetched in batches (`flush`), so the host never waits for a step that is
still running; step time is wall time since the last flush, less the evaluations and saves in it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import pathlib
import time
from typing import Any

import jax

from optiml_jax.training.errors import NonFiniteError
from optiml_jax.training.preemption import Preempted

log = logging.getLogger(__name__)
EVAL_DUE_KEY = "eval_due"  # in a checkpoint's data position: its step's evaluation has not run (preempted)


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


@dataclasses.dataclass
class LoopStart:
    """Where the loop starts: the state to train, its step, and what the start-up found."""

    state: Any
    start_step: int
    restored_from: int | None
    eval_due: bool  # the restored checkpoint's EVAL_PERIOD evaluation was left by a preempted run
    set_aside: list[dict]
    warnings: list[str]


def evaluate_loss(trainer, params, streams: dict, num_batches: int, batch_size: int) -> dict[str, dict]:
    """Eval loss and token accuracy per split over `num_batches` batches of each eval stream."""
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


class StepLoop:
    """One launch's steps, from `start.start_step` to `optimizer.train_steps`."""

    def __init__(self, *, trainer, stream, evals: dict, first_batches: dict, ckpt, logger, watch, data, optimizer,
                 checkpoint, evaluation, execution, written_config, model_dir, run_shape: dict, flops_per_step: float,
                 peak: float | None, start: LoopStart):
        self.trainer, self.stream, self.evals, self.first_batches = trainer, stream, evals, first_batches
        self.ckpt, self.logger, self.watch = ckpt, logger, watch
        self.data, self.optimizer, self.evaluation, self.execution = data, optimizer, evaluation, execution
        self.ckpt_period = checkpoint.checkpoint_period
        self.written_config, self.model_dir, self.run_shape = written_config, model_dir, run_shape
        self.flops_per_step, self.peak, self.start = flops_per_step, peak, start
        self.state = start.state
        self.history: list[dict] = []
        self.pending: list[tuple[int, Any]] = []
        self.last_saved = start.restored_from
        self.clock = {"t": time.perf_counter(), "steps": 0, "other": 0.0}
        self.skip_cap = max(int(execution.max_consecutive_nonfinite),
                            math.ceil(execution.max_nonfinite_fraction * optimizer.train_steps))
        self.skipped = {"run": [], "total": logger.prior_nonfinite, "consecutive": 0}
        self.callback_results: dict[int, dict] = {}
        self.staged: tuple[int, Any, dict] | None = None  # (step, host copy, data position): see `_stage`

    # ------------------------------------------------------------ the loop
    def run(self) -> TrainResult:
        start, train_steps = self.start.start_step, self.optimizer.train_steps
        self._evaluate_at_start()
        step = start
        for step in range(start, train_steps):
            local = self.first_batches.pop(step) if step in self.first_batches else self.stream.get_batch(step)
            self.state, m = self.trainer.train_step(self.state, self.trainer.global_batch(local, self.data.batch_size))
            self.pending.append((step, m))
            self.clock["steps"] += 1
            done = step + 1
            if self.staged is not None:  # the previous step's save, once its metrics are checked
                self.flush(keep_newest=True)
                self._hand_over_staged()
            save_due = done % self.ckpt_period == 0 or done == train_steps
            stop = self.watch.stop_reason(step) if done < train_steps else None  # the same on every process
            if self.last_saved is not None:
                self.ckpt.check_for_errors()  # a failed background save ends the run now, naming path and OS error
            if save_due and not stop and done < train_steps and not self.is_eval_step(done) and self.ckpt.stages_saves:
                self._stage(done)
            elif save_due or stop:
                self.flush(keep_newest=False)
                self._save(done, eval_due=bool(stop) and self.is_eval_step(done),
                           final=bool(stop) or done == train_steps, urgent=bool(stop))
                if stop:
                    self._stop(done, stop)
            elif done % max(self.execution.log_period, 1) == 0:
                self.flush(keep_newest=True)
            if self.is_eval_step(done):
                self.run_periodic_eval(done)
        return self._finish(max(step + 1, start))

    def is_eval_step(self, at: int) -> bool:
        period = self.evaluation.eval_period
        return bool(period) and at % period == 0 and at != self.optimizer.train_steps

    def data_state(self, next_step: int, eval_due: bool = False) -> dict:
        """The data position saved with a checkpoint (the stream's own state when it has one)."""
        extra = self.stream.state() if hasattr(self.stream, "state") else {}
        due = {EVAL_DUE_KEY: True} if eval_due else {}
        return {"step": int(next_step), "examples": int(next_step) * self.data.batch_size, **self.run_shape,
                "stream": extra, **due}

    def _stage(self, done: int) -> None:
        """A periodic save without a stall: the host copy of step `done`'s state is dispatched now, behind the step,
        and the next step is dispatched before the host waits for anything; the copy goes to the background saver
        one step later, once `done`'s metrics were fetched and found finite (a non-finite stop drops it unsaved, as
        the synchronous path never saved it). Waiting for `done`'s metrics here instead, before the next dispatch,
        left the devices idle for one step's host work: 2.1-2.4x the median step on a tiny CPU model
        (perf/save_in_loop.py). The data position is taken now, before the stream serves the next batch."""
        began = time.monotonic()
        self.staged = (done, self.ckpt.host_copy(self.state), self.data_state(done))
        self.clock["other"] += time.monotonic() - began

    def _hand_over_staged(self) -> None:
        done, snapshot, data_state = self.staged
        self.staged = None
        self._save_step(done, None, data_state, snapshot=snapshot)

    def _save(self, done: int, eval_due: bool, final: bool, urgent: bool) -> None:
        self._save_step(done, self.state, self.data_state(done, eval_due=eval_due), final=final, urgent=urgent)

    def _save_step(self, done: int, state, data_state: dict, **how) -> None:
        if done == self.last_saved:
            return
        began = time.monotonic()
        self.ckpt.save(done, state, data_state, force=True, **how)
        self.clock["other"] += time.monotonic() - began
        # MAX_RUNTIME's margin: the step path's part, or a background save's whole (start to commit)
        self.watch.save_took(max(time.monotonic() - began, self.ckpt.slowest_save_s))
        self.last_saved = done

    def _stop(self, done: int, reason: str) -> None:
        self.ckpt.wait_until_finished()
        raise Preempted(f"{reason}: stopped after step {done} of {self.optimizer.train_steps} and saved checkpoint "
                        f"{done} in {self.ckpt.directory}; rerun the same command to resume", step=done, reason=reason)

    def _finish(self, final_step: int) -> TrainResult:
        self.flush(keep_newest=False)
        train_steps, start = self.optimizer.train_steps, self.start
        eval_results = self._eval_losses() if self.evals else {}
        for split, r in eval_results.items():
            self.logger.log(train_steps, r, split=f"eval_{split}")
        if start.start_step < train_steps:
            self.run_eval_callback(train_steps)
        self.ckpt.wait_until_finished()
        skipped = self.skipped
        if skipped["total"]:
            log.warning("skipped %d non-finite steps in all (%d by this process: %s)", skipped["total"],
                        len(skipped["run"]), step_ranges(skipped["run"]))
        return TrainResult(model_dir=self.model_dir, start_step=start.start_step, final_step=final_step,
                           state=self.state, history=self.history, eval_results=eval_results,
                           task_eval_results=self.callback_results, restored_from=start.restored_from,
                           skipped_steps=list(skipped["run"]), skipped_total=int(skipped["total"]),
                           set_aside=start.set_aside, warnings=start.warnings)

    # ------------------------------------------------------------ metrics and guardrails
    def flush(self, keep_newest: bool) -> None:
        """Fetch queued step metrics, stop on non-finite ones (or past the skip cap), log them."""
        ready = self.pending[:-1] if keep_newest else self.pending[:]
        if not ready:
            return
        del self.pending[: len(ready)]
        fetched = jax.device_get([m for _, m in ready])
        clock = self.clock
        per_step = max(time.perf_counter() - clock["t"] - clock["other"], 1e-9) / max(clock["steps"], 1)
        clock["t"], clock["steps"], clock["other"] = time.perf_counter(), len(self.pending), 0.0
        for (step, _), m in zip(ready, fetched):
            bad = bool(int(m["nonfinite"]))
            if bad and self.execution.on_nonfinite == "stop":
                raise NonFiniteError(
                    f"step {step}: non-finite loss ({float(m['loss'])}) or gradient norm ({float(m['grad_norm'])}); "
                    f"stopping. {last_good(self.last_saved, self.ckpt.directory)} "
                    "Set ExecutionConfig.on_nonfinite = 'skip' (ON_NONFINITE) to skip such steps instead.")
            record = self._record(m, per_step)
            self.logger.log(step, record)
            self.history.append({"step": step, **record})
            self._count_skip(step, bad)
        self.logger.progress(ready[-1][0] + 1, self.history[-1]["loss"] if self.history else None)
        self.logger.flush()

    def _record(self, m: dict, per_step: float) -> dict:
        tokens = self.data.batch_size * self.data.length
        record = {k: float(v) for k, v in m.items()}
        record["nonfinite"] = int(m["nonfinite"])
        record["step_time_s"] = per_step
        record["tokens_per_second"] = tokens / per_step
        record["target_tokens_per_second"] = record["label_tokens"] / per_step
        record["mfu"] = self.flops_per_step / per_step / self.peak if self.peak else float("nan")
        return record

    def _count_skip(self, step: int, bad: bool) -> None:
        """ON_NONFINITE = 'skip': count a skipped step; past either cap, stop like 'stop'."""
        skipped, cap_row = self.skipped, self.execution.max_consecutive_nonfinite
        if not bad:
            skipped["consecutive"] = 0
            return
        skipped["run"].append(step)
        skipped["total"] += 1
        skipped["consecutive"] += 1
        if skipped["consecutive"] <= cap_row and skipped["total"] <= self.skip_cap:
            return
        self.logger.flush()
        why = (f"{skipped['consecutive']} consecutive non-finite steps (cap "
               f"ExecutionConfig.max_consecutive_nonfinite = {cap_row})" if skipped["consecutive"] > cap_row else
               f"{skipped['total']} non-finite steps in all (cap max(max_consecutive_nonfinite, "
               f"max_nonfinite_fraction = {self.execution.max_nonfinite_fraction} x {self.optimizer.train_steps} "
               f"steps) = {self.skip_cap})")
        raise NonFiniteError(f"step {step}: ON_NONFINITE = 'skip' stopped after {why}; skipped steps this run: "
                             f"{step_ranges(skipped['run'])}. {last_good(self.last_saved, self.ckpt.directory)}")

    # ------------------------------------------------------------ evaluation
    def _eval_losses(self) -> dict[str, dict]:
        return evaluate_loss(self.trainer, self.state.params, self.evals, self.evaluation.eval_batches,
                             self.data.batch_size)

    def run_eval_callback(self, at_step: int) -> None:
        callback = self.evaluation.eval_callback
        if callback is None:
            return
        # Multi-process: every process calls it (SPMD over the training mesh; see evaluation.hooks.params_mesh).
        self.callback_results[at_step] = callback(self.written_config, self.state.params, at_step, self.model_dir)

    def run_periodic_eval(self, at: int) -> None:
        began = time.perf_counter()
        if self.evals:
            for split, r in self._eval_losses().items():
                self.logger.log(at, r, split=f"eval_{split}")
        self.run_eval_callback(at)
        self.clock["other"] += time.perf_counter() - began  # not the steps' time (their step_time_s, tokens/s, MFU)

    def _evaluate_at_start(self) -> None:
        start = self.start.start_step
        if start == 0:
            self.run_eval_callback(0)  # the model before training: the baseline of the final report
        elif self.start.eval_due and self.is_eval_step(start):
            # A preemption stopped the last run on this EVAL_PERIOD step: it saved first and left the evaluation of
            # that step to the resumed run (a grace period is for the save), which runs it now, on the same params.
            log.info("running the evaluation of step %d, left by the preempted run", start)
            self.run_periodic_eval(start)


def last_good(last_saved: int | None, directory) -> str:
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
