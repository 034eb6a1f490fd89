"""Step time around a periodic save in the trainer's own loop (issue #24): `train()` itself, its defaults
(LOG_PERIOD = 1, verified async checkpoints, KEEP_CHECKPOINTS = 3), the tiny OPT on one CPU device, run after run
with CHECKPOINT_WRITER 'thread', 'process' and no periodic save at all (the noise floor), alternated so that all
five see the same load: "-unstaged" is the loop as it was before saves were staged (the saving step's metrics
waited for before the next step is dispatched; `StepLoop._stage`), for a side-by-side comparison.

    python perf/save_in_loop.py --steps 1800 --period 300 --rounds 2

Why not `perf/checkpoint_writers.py` alone: that script drives `TrainCheckpointManager.save` from a loop that waits
for every step, so it cannot see what the trainer's loop does around a save (it used to fetch the saving step's
metrics before dispatching the next step, which left the device idle for one step's host work). Here a step's time
is the interval between two dispatches of the jitted train step, as the trainer makes them: in the loop's steady
state (the host one step ahead) that is the step's wall time, and any wait on the host shows up in it.

Per variant, over the run's median interval: the save's two steps (the interval that dispatches the host copy
and the next one, which hands it over: their mean), the mean over the `--period` intervals from the save, the worst
of the five from the save; and the excess (the window's time
less as many median intervals); medians over the saves of all rounds. Results go into perf/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
WRITERS = ("none", "thread", "process", "thread-unstaged", "process-unstaged")


def _timed_trainer(stamps: list):
    """Trainer.__init__ wrapped so that every train-step dispatch records its time."""
    from optiml_jax.training.trainer import Trainer

    original = Trainer.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        jitted = self.train_step

        def timed(state, batch):
            stamps.append(time.perf_counter())
            return jitted(state, batch)

        self.train_step = timed

    Trainer.__init__ = init
    return lambda: setattr(Trainer, "__init__", original)


def _one_run(variant: str, steps: int, period: int, directory: str) -> list[float]:
    import jax

    from optiml_jax.checkpoints.training_runs import TrainCheckpointManager
    from optiml_jax.testing.train_configs import train_configs
    from optiml_jax.training.model_config import opt_config
    from optiml_jax.training.partitioning import Partitioner, make_mesh, standard_rules
    from optiml_jax.training.synthetic_data import synthetic_stream
    from optiml_jax.training.train_loop import train

    writer, unstaged = variant.removesuffix("-unstaged"), variant.endswith("-unstaged")
    stamps: list[float] = []
    restore = _timed_trainer(stamps)
    staging = TrainCheckpointManager.stages_saves
    if unstaged:
        TrainCheckpointManager.stages_saves = property(lambda self: False)
    model_dir = tempfile.mkdtemp(prefix=f"save_in_loop_{writer}_", dir=directory)
    try:
        train(**train_configs(
            model_dir=model_dir, mixture_or_task_name="synthetic", stream_factory=synthetic_stream,
            task_feature_lengths={"targets": 128}, batch_size=4, train_steps=steps, learning_rate=1e-4,
            warmup_steps=1, model_config=opt_config("tiny", vocab_size=512, dtype="float32", dropout_rate=0.0),
            partitioner=Partitioner(make_mesh((1, 1, 1), jax.devices()[:1]), standard_rules("data_parallel")),
            checkpoint_period=period if writer != "none" else steps + period,
            checkpoint_writer="thread" if writer == "none" else writer, progress=False, peak_flops=1e11))
    finally:
        restore()
        TrainCheckpointManager.stages_saves = staging
        shutil.rmtree(model_dir, ignore_errors=True)
    return [b - a for a, b in zip(stamps, stamps[1:])]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--period", type=int, default=250)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    import numpy as np

    directory = tempfile.mkdtemp(prefix="save_in_loop_")
    per = {w: {"saving": [], "window": [], "worst": [], "excess": [], "median": []} for w in WRITERS}
    try:
        for _ in range(args.rounds):
            for writer in WRITERS:
                d = np.asarray(_one_run(writer, args.steps, args.period, directory))
                base = float(np.median(d[10:]))
                r = per[writer]
                r["median"].append(base)
                # step index s (0-based) ends with the save of step s + 1; its interval is d[s]; the last save is
                # the final one (synchronous), left out with its window
                for s in range(args.period - 1, args.steps - args.period, args.period):
                    w = d[s:s + args.period]
                    r["saving"].append(d[s:s + 2].mean() / base)
                    r["window"].append(w.mean() / base)
                    r["worst"].append(d[s:s + 5].max() / base)
                    r["excess"].append(w.sum() - len(w) * base)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print(f"load average {os.getloadavg()[0]:.1f}; {args.rounds} rounds of {args.steps} steps, period {args.period}")
    for writer in WRITERS:
        r = per[writer]
        print(f"{writer:16s} n={len(r['saving'])}: median step {np.median(r['median']) * 1e3:.1f} ms; the save's 2 steps "
              f"median {np.median(r['saving']):.2f}x (max {np.max(r['saving']):.2f}x); window mean median "
              f"{np.median(r['window']):.3f}x (max {np.max(r['window']):.3f}x); worst of the 5 from the save median "
              f"{np.median(r['worst']):.2f}x; excess median {np.median(r['excess']) * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
