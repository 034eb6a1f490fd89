"""What an asynchronous checkpoint save costs the steps around it (issue #24): step time of the step that saves and
of the steps after it, against the median step.

    python perf/async_save_cost.py --size tiny --steps 1200 --period 100
    python perf/async_save_cost.py --size tiny --steps 1200 --period 100 --on_step_path   # the save as before
    python perf/async_save_cost.py --size 125m --batch 2 --length 128 --steps 24 --period 8

The loop is the trainer's (`step_loop.StepLoop.run`): dispatch the step, start the save of its state when one is due
(`TrainCheckpointManager.save`: a single process's async save dispatches a host copy and hands it to the background
saver, checkpoints/background_save.py; `--on_step_path`: checksums, then Orbax's save, on the step path), then wait
for the step's metrics as LOG_PERIOD = 1 does. A step's time runs from its dispatch to its metrics being on the
host, so the blocking part of a save lands in the step that saves, and a background write that slows the next
steps lands in theirs. Step 0 (compilation) is left out. Results go into perf/RESULTS.md by hand.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--size", default="tiny")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--length", type=int, default=128)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--period", type=int, default=10)
    p.add_argument("--sync", action="store_true", help="synchronous saves, for comparison")
    p.add_argument("--no_verify", action="store_true", help="VERIFY_CHECKPOINTS = False")
    p.add_argument("--on_step_path", action="store_true",
                   help="Orbax's save on the step path (as before the background saver)")
    args = p.parse_args()

    import jax
    import numpy as np

    from optiml_jax.checkpoints.training_runs import TrainCheckpointManager
    from optiml_jax.training.run_config import OptimizerConfig
    from optiml_jax.training import train_state
    from optiml_jax.training.model_config import opt_config
    from optiml_jax.training.partitioning import Partitioner, make_mesh, standard_rules
    from optiml_jax.training.synthetic_data import synthetic_stream
    from optiml_jax.training.train_loop import build_trainer

    vocab = 512 if args.size == "tiny" else None
    config = opt_config(args.size, dtype="float32", dropout_rate=0.0, **({"vocab_size": vocab} if vocab else {}))
    part = Partitioner(make_mesh((1, 1, 1), jax.devices()[:1]), standard_rules("data_parallel"))
    setup = build_trainer(model_config=config, partitioner=part, seed=0,
        optimizer=OptimizerConfig(train_steps=args.steps, learning_rate=1e-4, warmup_steps=1, lr_decay="constant"))
    trainer = setup.trainer
    state = train_state.init_state(setup.model_config, setup.tx, part, 0)
    nbytes = sum(x.nbytes for x in jax.tree.leaves(state))
    stream = synthetic_stream(mixture_or_task_name="synthetic", task_feature_lengths={"targets": args.length},
                              batch_size=args.batch, seed=0, shard_index=0, num_shards=1,
                              vocab_size=config.vocab_size)
    d = tempfile.mkdtemp(prefix="async_save_cost_")
    ckpt = TrainCheckpointManager(d, period=args.period, keep=2, async_save=not args.sync,
                                  verify=not args.no_verify, background=False if args.on_step_path else None)
    ckpt.prepare(state)  # as train() does: the host copy is compiled before the first step
    times, blocking, waited = [], {}, {}
    try:
        for step in range(args.steps):
            batch = trainer.global_batch(stream.get_batch(step), args.batch)
            t0 = time.perf_counter()
            state, m = trainer.train_step(state, batch)
            done = step + 1
            if done % args.period == 0:
                t1 = time.perf_counter()
                ckpt.save(done, state, {"step": done}, force=True)
                blocking[step] = time.perf_counter() - t1
                waited[step] = ckpt.waited_s
            float(jax.device_get(m["loss"]))
            times.append(time.perf_counter() - t0)
        ckpt.wait_until_finished()
        slowest = ckpt.slowest_save_s
    finally:
        ckpt.close()
        shutil.rmtree(d, ignore_errors=True)
    saving = sorted(blocking)
    after = {s + k for s in saving for k in (1, 2) if s + k < args.steps}
    plain = [t for s, t in enumerate(times) if s > 0 and s not in blocking and s not in after]
    median = statistics.median(plain)
    print(f"state {nbytes / 2**20:.1f} MiB, {'sync' if args.sync else 'async'} saves every {args.period} steps, "
          f"verify {'off' if args.no_verify else 'on'}; slowest background save {slowest:.2f} s; median step {median * 1e3:.1f} ms over {len(plain)} steps")
    for s in saving:
        rel = [times[s + k] / median for k in (0, 1, 2) if s + k < args.steps]
        print(f"  save after step {s}: save() blocked {blocking[s] * 1e3:.1f} ms (of it waiting for the previous "
              f"save {waited[s] * 1e3:.1f} ms); that step {times[s] * 1e3:.1f} ms "
              f"({rel[0]:.2f}x), next steps " + ", ".join(f"{x:.2f}x" for x in rel[1:]))
    over = [times[s] / median - 1 for s in saving[1:]]  # the first save also compiles (checksums on the step path)
    after_over = [times[s] / median - 1 for s in sorted(after)]
    print(f"saves after the first: step that saves +{np.mean(over):.0%} (max +{max(over):.0%}); the two steps after "
          f"each save {np.mean(after_over):+.0%} on average")
    # The same ratios for steps halfway between saves: what the load alone does to a step (the noise floor).
    control = [times[s + args.period // 2] / median - 1 for s in saving[:-1]]
    ratios = [times[s] / median - 1 for s in saving]
    print(f"summary over {len(saving)} saves: step that saves median {np.median(ratios):+.0%} (mean "
          f"{np.mean(ratios):+.0%}); control steps halfway between saves median {np.median(control):+.0%} (mean "
          f"{np.mean(control):+.0%}); save() on the step path median {np.median(list(blocking.values())) * 1e3:.1f} "
          f"ms, max {max(blocking.values()) * 1e3:.1f} ms (waiting for the previous save: max "
          f"{max(waited.values()) * 1e3:.1f} ms)")

if __name__ == "__main__":
    main()
