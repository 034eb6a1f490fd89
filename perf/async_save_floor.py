"""The floor of what a background checkpoint save costs the steps around it (issue #24): where the extra step
time after a save comes from, part by part, in one run so that every part sees the same load.

    python perf/async_save_floor.py --steps 4000 --period 20

Saves alternate between four jobs on the background saver's thread (checkpoints/background_save.py), save by
save: `none` (no save: the noise floor), `copy` (wait for the host copy only), `checksum` (the host copy's
checksums) and `full` (the trainer's save: checksums, Orbax's save, its commit). For each: the excess step time
summed over the `period - 1` steps from the save (against the median step), the saving step's ratio to the
median, and the worst of the three steps after it. Then the CPU time (all threads) of one full save, measured
alone: on a host whose cores the step itself uses (XLA:CPU), that CPU time must come out of the steps.
Results go into perf/RESULTS.md by hand.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
MODES = ("none", "copy", "checksum", "full")


def _setup(steps: int):
    """The tiny model's trainer, state, stream and a checkpoint manager (saves driven by hand below)."""
    import jax

    from optiml_jax.checkpoints.training_runs import TrainCheckpointManager
    from optiml_jax.training import train_state
    from optiml_jax.training.model_config import opt_config
    from optiml_jax.training.partitioning import Partitioner, make_mesh, standard_rules
    from optiml_jax.training.run_config import OptimizerConfig
    from optiml_jax.training.synthetic_data import synthetic_stream
    from optiml_jax.training.train_loop import build_trainer

    config = opt_config("tiny", dtype="float32", dropout_rate=0.0, vocab_size=512)
    part = Partitioner(make_mesh((1, 1, 1), jax.devices()[:1]), standard_rules("data_parallel"))
    setup = build_trainer(model_config=config, partitioner=part, seed=0,
        optimizer=OptimizerConfig(train_steps=steps, learning_rate=1e-4, warmup_steps=1, lr_decay="constant"))
    state = train_state.init_state(setup.model_config, setup.tx, part, 0)
    stream = synthetic_stream(mixture_or_task_name="synthetic", task_feature_lengths={"targets": 128}, batch_size=4,
                              seed=0, shard_index=0, num_shards=1, vocab_size=config.vocab_size)
    directory = tempfile.mkdtemp(prefix="async_save_floor_")
    ckpt = TrainCheckpointManager(directory, period=1, keep=2, background=False)
    ckpt.prepare(state)
    return setup.trainer, state, stream, ckpt, directory


def _steps_with_saves(trainer, state, stream, ckpt, steps: int, period: int):
    """Step times, and which job the save after each saving step ran; then the state reached."""
    import jax

    from optiml_jax.checkpoints import integrity
    from optiml_jax.checkpoints.background_save import BackgroundSaver, host_snapshot

    def job(mode, step, snapshot):
        if mode == "copy":
            jax.block_until_ready(snapshot)
        elif mode == "checksum":
            integrity.host_partial_checksums(snapshot)
        elif mode == "full":
            ckpt._save_and_commit(step, snapshot, {"step": step}, True)

    saver = BackgroundSaver(job)
    times, mode_of = [], {}
    for step in range(steps):
        batch = trainer.global_batch(stream.get_batch(step), 4)
        t0 = time.perf_counter()
        state, m = trainer.train_step(state, batch)
        if (step + 1) % period == 0 and step > 10:
            mode_of[step] = MODES[len(mode_of) % len(MODES)]
            if mode_of[step] != "none":
                saver.submit(mode_of[step], step + 1, host_snapshot(state))
        float(jax.device_get(m["loss"]))
        times.append(time.perf_counter() - t0)
    saver.close()
    return times, mode_of, state


def _save_cpu(ckpt, state, first_step: int) -> tuple[float, float]:
    """CPU time (all threads) of one full save measured alone (median of 5 after a warm-up), and of its checksums."""
    import jax
    import numpy as np

    from optiml_jax.checkpoints import integrity
    from optiml_jax.checkpoints.background_save import host_snapshot

    snapshot = jax.block_until_ready(host_snapshot(state))
    cpu = []
    for k in range(6):
        began = time.process_time()
        ckpt._save_and_commit(first_step + k, snapshot, {"step": 0}, True)
        cpu.append(time.process_time() - began)
    began = time.process_time()
    integrity.host_partial_checksums(snapshot)
    return float(np.median(cpu[1:])), time.process_time() - began


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--period", type=int, default=20)
    args = p.parse_args()
    import numpy as np

    trainer, state, stream, ckpt, directory = _setup(args.steps)
    try:
        times, mode_of, state = _steps_with_saves(trainer, state, stream, ckpt, args.steps, args.period)
        save_cpu, checksum_cpu = _save_cpu(ckpt, state, args.steps + 1)
    finally:
        ckpt.close()
        shutil.rmtree(directory, ignore_errors=True)
    times = np.asarray(times)
    base, window = float(np.median(times[10:])), args.period - 1
    print(f"median step {base * 1e3:.1f} ms; load average {os.getloadavg()[0]:.1f}")
    for mode in MODES:
        at = [s for s, x in mode_of.items() if x == mode and s + window < args.steps]
        excess = [float(np.sum(times[s:s + window]) - window * base) for s in at]
        print(f"{mode:9s} n={len(at)}: excess over the {window} steps from the save median "
              f"{np.median(excess) * 1e3:.0f} ms (mean {np.mean(excess) * 1e3:.0f}); saving step median "
              f"{np.median([times[s] / base for s in at]):.2f}x; worst of the next 3 median "
              f"{np.median([max(times[s + 1:s + 4]) / base for s in at]):.2f}x")
    print(f"one full save alone: CPU {save_cpu * 1e3:.0f} ms (all threads; checksums {checksum_cpu * 1e3:.1f} ms)")


if __name__ == "__main__":
    main()
