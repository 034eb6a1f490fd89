"""Training throughput of the full optiml_jax trainer step vs the Hugging Face PyTorch step, one run.

Ours, per step, is exactly what `optiml_jax.training.train_loop.train` does per step: the step-indexed
stream builds the packed, label-masked host batch (`SyntheticStream.get_batch`, numpy), it becomes a
global sharded array (`Trainer.global_batch`), the jitted train step runs (label-only CE, clipping,
AdamW (0.9, 0.95) with float32 state, non-finite guard) and the metrics are fetched to the host.
Theirs is `perf/train_step_cpu.py`'s PyTorch peer (OPTForCausalLM, AdamW, same shapes, unpacked).
Each runs in its own worker process (`worker_process.py`) and steps are interleaved after warm-up so
machine noise hits both; a float32 2048^3 matmul measured in the same run is the MFU peak. FLOPs per token: 6N + 12*L*H*Q*T (full causal; see training/metrics.py).

    python perf/train_throughput.py                       # 125m, batch 4 x 512, float32, 2 threads
    python perf/train_throughput.py --config tiny --batch 2 --length 64 --steps 1   # smoke test
"""

from __future__ import annotations

import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from bench_report import write_json  # noqa: E402
from step_pair import (  # noqa: E402
    make_torch_step,
    print_summaries,
    reported_matmul_peak,
    step_arguments,
    step_summary,
)


def trainer_step_factory(args):
    """(run, info): one step of our trainer exactly as train_loop.train runs it (host batch included)."""
    import jax

    from optiml_jax.training import optimizer, train_state
    from optiml_jax.training.model_config import opt_config
    from optiml_jax.training.partitioning import make_partitioner
    from optiml_jax.training.synthetic_data import SyntheticStream
    from optiml_jax.training.trainer import Trainer

    config = opt_config(args.config, dtype="float32", dropout_rate=args.dropout, attention_backend=args.attention)
    part = make_partitioner((-1, 1, 1), "data_parallel")
    sched = optimizer.make_schedule(5e-5, 60, 4000)
    tx = optimizer.make_optimizer(sched, 0.9, 0.95, 1e-8, weight_decay=0.01)
    trainer = Trainer(config, tx, sched, part, train_state.state_shardings(config, tx, part),
                      loss_chunk_size=args.loss_chunk)
    state = {"s": train_state.init_state(config, tx, part, seed=0), "step": 0}
    stream = SyntheticStream(args.batch, args.length, vocab_size=config.vocab_size, content_vocab=1000,
                             min_source_length=8,
                             max_source_length=max(8, min(200, args.length // 2 - 1)))

    def run():
        batch = trainer.global_batch(stream.get_batch(state["step"]), args.batch)
        state["s"], m = trainer.train_step(state["s"], batch)
        state["step"] += 1
        return float(jax.device_get(m)["loss"])

    return run, f"optiml_jax trainer, loss_chunk_size={args.loss_chunk}"


def torch_step_factory(args):
    from optiml_jax.training.model_config import opt_config
    from train_step_cpu import _torch_model

    config = opt_config(args.config, dtype="float32", dropout_rate=args.dropout, attention_backend=args.attention)
    run, attn = make_torch_step(_torch_model, config, args.batch, args.length, args.threads)
    return run, f"torch: threads={args.threads} attn={attn}"


def main(argv=None):
    p = step_arguments(__doc__)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--loss_chunk", type=int, default=None, help="Trainer(loss_chunk_size=...) (LOSS_CHUNK_SIZE)")
    args = p.parse_args(argv)

    import jax

    from optiml_jax.kernels import resolve_backend
    from optiml_jax.training.metrics import flops_per_token
    from optiml_jax.training.model_config import opt_config
    from worker_process import RemoteStep

    config = opt_config(args.config, dtype="float32", dropout_rate=args.dropout, attention_backend=args.attention)
    load_start = os.getloadavg()
    tokens = args.batch * args.length
    flops = flops_per_token(config, args.length) * tokens
    print(f"config={args.config} batch={args.batch}x{args.length} params={config.num_params():,} "
          f"attention={args.attention}->{resolve_backend(args.attention)} devices={jax.devices()} "
          f"cpu_count={os.cpu_count()} loadavg={load_start}", flush=True)
    peak = reported_matmul_peak()

    # Each framework in its own worker process (see worker_process.py), steps interleaved from here.
    ours = RemoteStep(trainer_step_factory, args)
    print(f"{ours.info} (worker process): compile + first step {ours.first_s:.1f} s", flush=True)
    theirs = None
    if not args.skip_torch:
        theirs = RemoteStep(torch_step_factory, args)
        print(f"{theirs.info} (worker process, warm-up done)", flush=True)
    ours.timed()
    ours_t, theirs_t = [], []
    for i in range(args.steps):
        ours_t.append(ours.timed())
        if theirs:
            theirs_t.append(theirs.timed())
        print(f"step {i}: optiml_jax {ours_t[-1]:.2f} s" + (f"  torch {theirs_t[-1]:.2f} s" if theirs else ""),
              flush=True)
    ours.close()
    if theirs:
        theirs.close()

    summary = lambda ts: step_summary(ts, tokens, flops, peak)  # noqa: E731

    result = {"command": " ".join(["python", *sys.argv]), "attention": resolve_backend(args.attention),
              "loadavg_start": load_start, "loadavg_end": os.getloadavg(), "config": args.config,
              "batch": args.batch, "length": args.length, "threads": args.threads, "loss_chunk": args.loss_chunk,
              "matmul_peak_gflops": peak / 1e9, "ideal_step_s_at_peak": flops / peak,
              "optiml_jax": summary(ours_t)}
    if theirs:
        result["torch"] = summary(theirs_t)
        result["ratio_tokens_per_s"] = result["optiml_jax"]["tokens_per_s"] / result["torch"]["tokens_per_s"]
        result["max_possible_ratio_at_peak"] = result["torch"]["median_s"] / result["ideal_step_s_at_peak"]
    print_summaries(result, ("optiml_jax", "torch"), load_start)
    if "ratio_tokens_per_s" in result:
        print(f"ratio optiml_jax/torch: {result['ratio_tokens_per_s']:.2f}x; ceiling (every FLOP at the measured "
              f"peak): {result['max_possible_ratio_at_peak']:.2f}x")
    write_json(args.json_out, result)
    return result


if __name__ == "__main__":
    main()
