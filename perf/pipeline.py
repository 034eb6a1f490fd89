"""Training-pipeline throughput on the embedded mini-benchmark (one host, numpy stream).

Measures, for `mini_bench_train` (the paper's recipe) at rows of `--length` tokens:
  - cold start: registering + generating + tokenizing every task once (what step 0 pays);
  - warm steady state: `TrainStream.get_batch(step)` for `--steps` consecutive steps, reported as packed
    (non-padding) tokens per second, label tokens per second, and packing efficiency.
The comparison target is >= 10x the 125m CPU training step's tokens/s (perf/train_step_cpu.py; the
PyTorch peer does ~89 tokens/s on this machine per environment_notes.md).

    python perf/pipeline.py                       # 2048 x 8 rows, 20 steps
    python perf/pipeline.py --steps 3 --batch 2   # smoke test
"""

from __future__ import annotations

import argparse
import json
import time

PEER_125M_TOKENS_PER_S = 89.0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mixture", default="mini_bench_train")
    p.add_argument("--length", type=int, default=2048)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--json_out", default=None)
    args = p.parse_args(argv)

    t0 = time.perf_counter()
    import optiml_jax.tasks.registrations  # noqa: F401
    from optiml_jax.data import get_train_stream

    t_import = time.perf_counter() - t0
    stream = get_train_stream(args.mixture, args.length, args.batch, seed=0)
    t0 = time.perf_counter()
    for t in stream.task_names:
        stream._tokens(t)
    t_cold = time.perf_counter() - t0
    stream.get_batch(10_000)  # warm-up
    nonpad = labels = truncated = examples = 0
    t0 = time.perf_counter()
    for step in range(args.steps):
        batch, st = stream.get_batch_with_stats(step)
        nonpad += int((batch["decoder_segment_ids"] > 0).sum())
        labels += int(batch["decoder_loss_weights"].sum())
        truncated, examples = truncated + st.truncated, examples + st.examples
    dt = time.perf_counter() - t0
    total = args.steps * args.batch * args.length
    res = {
        "mixture": args.mixture, "length": args.length, "batch": args.batch, "steps": args.steps,
        "import_s": round(t_import, 2), "cold_tokenize_all_tasks_s": round(t_cold, 2),
        "s_per_step": round(dt / args.steps, 4), "packed_tokens_per_s": round(nonpad / dt),
        "label_tokens_per_s": round(labels / dt), "examples_per_s": round(examples / dt),
        "packing_efficiency": round(nonpad / total, 4), "truncated": truncated,
        "x_peer_125m_cpu_step": round(nonpad / dt / PEER_125M_TOKENS_PER_S, 1),
    }
    print(json.dumps(res, indent=1))
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(res, f, indent=1)
    return res


if __name__ == "__main__":
    main()
