"""Step time around a background save, thread writer vs process writer (issue #24): saves alternate, save by
save in one run, between none (the noise floor), `CHECKPOINT_WRITER = 'thread'` and `'process'`, each through
the trainer's own `TrainCheckpointManager.save` into its own directory, so that all three see the same load.

    python perf/checkpoint_writers.py --steps 3000 --period 100

Per save: the saving step over the median step, the mean step over the window up to the next save over the
median, the worst of the three steps after it, and the excess (the window's step time less as many median steps).
The period must exceed a save's duration (an idle-priority save of the tiny model takes ~1 s on a busy 2-core
host); the script prints the longest time a save waited for the previous one. Results go into perf/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
WRITERS = ("none", "thread", "process")


def _run(trainer, state, stream, managers: dict, steps: int, period: int):
    import jax

    batches = [trainer.global_batch(stream.get_batch(s), 4) for s in range(64)]
    times, writer_of, waited = [], {}, 0.0
    for step in range(steps):
        t0 = time.perf_counter()
        state, m = trainer.train_step(state, batches[step % len(batches)])
        if (step + 1) % period == 0 and step > 10:
            writer = writer_of[step] = WRITERS[len(writer_of) % len(WRITERS)]
            if writer != "none":
                managers[writer].save(step + 1, state, {"step": step + 1}, force=True)
                waited = max(waited, managers[writer].waited_s)
        float(jax.device_get(m["loss"]))
        times.append(time.perf_counter() - t0)
    return times, writer_of, waited


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--period", type=int, default=100)
    args = p.parse_args()
    import numpy as np

    from async_save_floor import _setup
    from optiml_jax.checkpoints.training_runs import TrainCheckpointManager

    trainer, state, stream, floor_ckpt, floor_dir = _setup(args.steps)
    floor_ckpt.close()
    directory = tempfile.mkdtemp(prefix="checkpoint_writers_")
    managers = {w: TrainCheckpointManager(os.path.join(directory, w), period=1, keep=2, writer=w)
                for w in ("thread", "process")}
    try:
        for m in managers.values():
            m.prepare(state)
        time.sleep(10)  # the worker's imports (idle priority) done before the first measured step
        times, writer_of, waited = _run(trainer, state, stream, managers, args.steps, args.period)
        durations = {w: m.slowest_save_s for w, m in managers.items()}
    finally:
        for m in managers.values():
            m.close()
        shutil.rmtree(directory, ignore_errors=True)
        shutil.rmtree(floor_dir, ignore_errors=True)
    times = np.asarray(times)
    base, window = float(np.median(times[10:])), args.period
    print(f"median step {base * 1e3:.1f} ms; load average {os.getloadavg()[0]:.1f}; longest wait for the previous "
          f"save {waited * 1e3:.0f} ms; slowest save, start to commit: thread {durations['thread']:.2f} s, "
          f"process {durations['process']:.2f} s")
    for writer in WRITERS:
        at = [s for s, x in writer_of.items() if x == writer and s + window < args.steps]
        mean = [times[s:s + window].mean() / base for s in at]
        print(f"{writer:8s} n={len(at)}: saving step median {np.median([times[s] / base for s in at]):.2f}x; "
              f"window mean median {np.median(mean):.3f}x (max {np.max(mean):.3f}x); worst of next 3 median "
              f"{np.median([times[s + 1:s + 4].max() / base for s in at]):.2f}x; excess median "
              f"{np.median([times[s:s + window].sum() - window * base for s in at]) * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
