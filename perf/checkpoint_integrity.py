"""What checkpoint verification costs: save and restore of a real train state with and without checksums.

    python perf/checkpoint_integrity.py --size 125m            # OPT-125m state (params + Adam moments, float32)
    python perf/checkpoint_integrity.py --size tiny --repeats 5

For each of `VERIFY_CHECKPOINTS = False / True` it times a synchronous save (checksums are computed before Orbax
starts writing) and a restore (checksums recomputed on the restored arrays and compared), best of `--repeats`,
plus the bare checksum pass over the state. Results go into perf/RESULTS.md by hand.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--size", default="125m")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--checksum_only", action="store_true", help="only the checksum pass (first call and steady)")
    args = p.parse_args()

    import jax
    import numpy as np

    from optiml_jax.checkpoints import integrity
    from optiml_jax.checkpoints.training_runs import TrainCheckpointManager
    from optiml_jax.training import optimizer, train_state
    from optiml_jax.training.model_config import opt_config
    from optiml_jax.training.partitioning import Partitioner, make_mesh, standard_rules

    config = opt_config(args.size, dtype="float32", dropout_rate=0.0)
    part = Partitioner(make_mesh((1, 1, 1), jax.devices()[:1]), standard_rules("data_parallel"))
    tx = optimizer.make_optimizer(optimizer.make_schedule(1e-4, 1, 10))
    state = train_state.init_state(config, tx, part, 0)
    jax.block_until_ready(state)
    nbytes = sum(x.nbytes for x in jax.tree.leaves(state))
    target = train_state.abstract_state(config, tx, part)
    t0 = time.perf_counter()
    integrity.array_checksums(state)  # compile once (once per process and state structure in a run)
    first = time.perf_counter() - t0
    t = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        integrity.array_checksums(state)
        t.append(time.perf_counter() - t0)
    print(f"state: {len(jax.tree.leaves(state))} arrays, {nbytes / 2**20:.1f} MiB; checksum pass {min(t):.3f} s "
          f"({nbytes / 2**30 / min(t):.2f} GiB/s); first call (compile + run) {first:.3f} s")
    if args.checksum_only:
        return
    for verify in (False, True):
        saves, restores = [], []
        for r in range(args.repeats):
            d = tempfile.mkdtemp(prefix="ckpt_cost_")
            try:
                mgr = TrainCheckpointManager(d, period=1, async_save=False, verify=verify)
                t0 = time.perf_counter()
                mgr.save(1, state, {"step": 1}, force=True)
                mgr.wait_until_finished()
                saves.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                restored, _, _ = mgr.restore(target)
                jax.block_until_ready(restored)
                restores.append(time.perf_counter() - t0)
                mgr.close()
            finally:
                shutil.rmtree(d, ignore_errors=True)
        print(f"verify={verify!s:5}: save {min(saves):.3f} s (median {np.median(saves):.3f}), "
              f"restore {min(restores):.3f} s (median {np.median(restores):.3f})")


if __name__ == "__main__":
    main()
