"""One accelerator check, one JSON: compiled Pallas kernel vs reference, attention TFLOP/s, an OPT-1.3B step.

Run it through `perf/device_check.sh` on a GPU or TPU host (jax installed; no TensorFlow, SeqIO or gin
needed: only `optiml_jax.models`, `optiml_jax.kernels` and gin-free `optiml_jax.training` modules are
imported). It stays under the time budget (`--budget_s`, default 450 s) by checking the clock before each
item and recording what it skipped.

Sections of the JSON:
- `kernel_check`: our compiled (not interpret) Pallas flash attention, forward and dq/dk/dv, against
  `reference_attention` on packed rows (several segments, unaligned boundaries, trailing padding), bf16
  and f32, head dims 64 and 128: max abs error, tolerance, pass.
- `attention`: TFLOP/s at T=2048, bf16, FA3 sizing (B*T = 16k tokens, H*D = 2048), head dims 64 and 128:
  ours on rows of 1/4/8/16 packed segments, `jax.nn.dot_product_attention` ('xla', and 'cudnn' on GPU,
  causal only: they cannot mask segments), JAX's bundled Pallas kernels (GPU: `pallas.ops.gpu.attention.mha`
  with 8 segments; TPU: splash attention with segment ids). FLOPs: fwd = 4*B*H*T^2*D/2 (the full causal
  triangle, also for packed rows), fwd+bwd = 3.5 x fwd.
- `train_step`: OPT-1.3B, bf16 compute, T=2048, 8 rows per device (metaseq's per-GPU batch), Pallas
  attention, the trainer's own jitted step (`train_loop.build_trainer` -> `planning.plan_train`, compiled
  once with the run's real compiler options and then timed): tokens/s and MFU against the device table's
  peak, next to the plan's estimate and memory (compiled memory_analysis vs measured peak bytes).

`--smoke` (automatic on CPU): interpret-mode Pallas, tiny shapes, the whole script in well under a minute.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # bench_report, when loaded as a module

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from bench_report import median_time  # noqa: E402  (perf/, the script's own folder)

SEGMENT_COUNTS = (1, 4, 8, 16)


class Budget:
    def __init__(self, seconds: float):
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def allows(self, seconds: float) -> bool:
        return self.left() > seconds


def _error(err: BaseException) -> str:
    return f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"


def packed_segments(batch: int, length: int, num_segments: int) -> jax.Array:
    """Rows of `num_segments` equal examples (the last absorbs the remainder), ids 1..n, no padding."""
    ids = np.minimum(np.arange(length) * num_segments // length, num_segments - 1) + 1
    return jnp.asarray(np.broadcast_to(ids, (batch, length)).astype(np.int32))


def ragged_segments(batch: int, length: int) -> jax.Array:
    """Packed rows with unaligned example boundaries and trailing padding (segment 0)."""
    rng = np.random.default_rng(0)
    out = np.zeros((batch, length), np.int32)
    for r in range(batch):
        start, seg = 0, 1
        while start < length - length // 8:
            n = int(rng.integers(length // 16 + 1, length // 3))
            out[r, start:min(start + n, length - length // 8)] = seg
            start, seg = start + n, seg + 1
    return jnp.asarray(out)


def kernel_check(*, smoke: bool, interpret: bool, budget: Budget) -> list[dict]:
    from optiml_jax.kernels.pallas_attention import flash_attention
    from optiml_jax.kernels.reference import reference_attention

    length, batch, heads = (64, 1, 2) if smoke else (2048, 2, 4)
    head_dims = (64,) if smoke else (64, 128)
    blocks = (16, 16) if smoke else None
    tolerances = {"float32": 2e-3 if interpret else 1e-2, "bfloat16": 6e-2}
    rows = []
    seg = ragged_segments(batch, length)
    for dtype in (jnp.bfloat16,) if smoke else (jnp.float32, jnp.bfloat16):
        for d in head_dims:
            if not budget.allows(30):
                rows.append({"dtype": jnp.dtype(dtype).name, "head_dim": d, "skipped": "time budget"})
                continue
            keys = jax.random.split(jax.random.key(d), 4)
            q, k, v, do = (jax.random.normal(x, (batch, length, heads, d), jnp.float32).astype(dtype) for x in keys)
            ours = lambda q, k, v: flash_attention(q, k, v, seg, block_sizes=blocks, interpret=interpret)  # noqa
            ref = lambda q, k, v: reference_attention(q.astype(jnp.float32), k.astype(jnp.float32),  # noqa
                                                      v.astype(jnp.float32), seg)
            row = {"dtype": jnp.dtype(dtype).name, "head_dim": d, "length": length, "batch": batch, "heads": heads,
                   "segments": "ragged packed rows + trailing padding", "compiled": not interpret}
            try:
                out, vjp = jax.vjp(jax.jit(ours), q, k, v)
                grads = vjp(do)
                ref_out, ref_vjp = jax.vjp(ref, q, k, v)
                ref_grads = ref_vjp(do.astype(jnp.float32))
                errs = {"out": out, "dq": grads[0], "dk": grads[1], "dv": grads[2]}
                refs = {"out": ref_out, "dq": ref_grads[0], "dk": ref_grads[1], "dv": ref_grads[2]}
                tol = tolerances[row["dtype"]]
                for name in errs:
                    a, b = np.asarray(errs[name], np.float32), np.asarray(refs[name], np.float32)
                    scale = max(float(np.abs(b).max()), 1.0)
                    row[f"max_abs_err_{name}"] = float(np.abs(a - b).max())
                    row[f"rel_err_{name}"] = row[f"max_abs_err_{name}"] / scale
                row["tolerance_rel"] = tol
                row["passed"] = all(row[f"rel_err_{n}"] <= tol for n in errs)
            except Exception as err:  # reported, not fatal: the rest of the check still runs
                row["error"] = _error(err)
                row["passed"] = False
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def _fwd_bwd(attend):
    return jax.jit(jax.grad(lambda q, k, v: jnp.sum(attend(q, k, v).astype(jnp.float32)), argnums=(0, 1, 2)))


def attention_table(*, smoke: bool, interpret: bool, budget: Budget, iters: int) -> list[dict]:
    from optiml_jax.kernels.pallas_attention import flash_attention

    platform = jax.default_backend()
    length = 128 if smoke else 2048
    head_dims = (64,) if smoke else (64, 128)
    counts = (4,) if smoke else SEGMENT_COUNTS
    dtype = jnp.float32 if smoke else jnp.bfloat16
    rows = []
    for d in head_dims:
        batch, heads = (1, 2) if smoke else (16384 // length, 2048 // d)
        keys = jax.random.split(jax.random.key(1), 3)
        q, k, v = (jax.random.normal(x, (batch, length, heads, d), jnp.float32).astype(dtype) for x in keys)
        flops = 4.0 * batch * heads * length * length * d / 2.0
        blocks = (32, 32) if smoke else None
        methods = {f"pallas_ours_{n}seg": (lambda q, k, v, s=packed_segments(batch, length, n):
                                           flash_attention(q, k, v, s, block_sizes=blocks, interpret=interpret),
                                           f"causal + {n} packed segments") for n in counts}
        methods["xla_dot_product_attention"] = (
            lambda q, k, v: jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation="xla"),
            "causal only (cannot mask segments)")
        seg8 = packed_segments(batch, length, 8)
        if platform == "gpu":
            from jax.experimental.pallas.ops.gpu import attention as gpu_attention

            methods["cudnn_dot_product_attention"] = (
                lambda q, k, v: jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation="cudnn"),
                "causal only (cannot mask segments)")
            methods["jax_pallas_gpu_mha_8seg"] = (
                lambda q, k, v: gpu_attention.mha(q, k, v, seg8, sm_scale=d ** -0.5, causal=True),
                "JAX bundled Triton mha, causal + 8 segments (no segment skipping)")
        elif platform == "tpu":
            from jax.experimental.pallas.ops.tpu import flash_attention as tpu_flash

            from optiml_jax.kernels import peer_backends

            def splash(q, k, v):
                # A fresh kernel per trace: the cached one leaks a tracer into a second trace (jit, then grad).
                peer_backends._splash_kernel.cache_clear()
                return peer_backends.splash_attention(q, k, v, seg8, causal=True)

            def bundled_flash(q, k, v):  # [B, H, T, D] layout
                t = lambda x: jnp.swapaxes(x, 1, 2)  # noqa: E731
                out = tpu_flash.flash_attention(t(q), t(k), t(v), segment_ids=tpu_flash.SegmentIds(seg8, seg8),
                                                causal=True, sm_scale=d ** -0.5)
                return t(out)

            methods["jax_splash_8seg"] = (splash, "JAX bundled TPU splash, causal + 8 segments (static-mask sparsity)")
            methods["jax_tpu_flash_8seg"] = (bundled_flash, "JAX bundled TPU flash_attention, causal + 8 segments, "
                                                            "default 128 blocks (no segment skipping)")
        for name, (attend, note) in methods.items():
            row = {"method": name, "note": note, "seq": length, "head_dim": d, "batch": batch, "heads": heads,
                   "dtype": jnp.dtype(dtype).name}
            if not budget.allows(25):
                row["skipped"] = "time budget"
                rows.append(row)
                continue
            try:
                fwd = median_time(jax.jit(attend), (q, k, v), iters)
                row.update(fwd_ms=fwd * 1e3, fwd_tflops=flops / fwd / 1e12)
                fb = median_time(_fwd_bwd(attend), (q, k, v), iters)
                row.update(fwd_bwd_ms=fb * 1e3, fwd_bwd_tflops=3.5 * flops / fb / 1e12)
            except Exception as err:  # a method this platform lacks is reported, not fatal
                row["error"] = _error(err)
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def train_step(*, smoke: bool, budget: Budget, steps: int) -> dict:
    from optiml_jax.training.run_config import OptimizerConfig
    from optiml_jax.training import planning, train_loop, train_state
    from optiml_jax.training.device_specs import get_device_spec, spec_for_device_kind
    from optiml_jax.training.model_config import opt_config
    from optiml_jax.training.partitioning import make_partitioner
    from optiml_jax.training.synthetic_data import SyntheticStream

    size, length, rows_per_device = ("tiny", 64, 2) if smoke else ("1.3b", 2048, 8)
    small = dict(vocab_size=512, num_layers=1, attention_block_sizes=(32, 32)) if smoke else {}
    config = opt_config(size, dtype="bfloat16", dropout_rate=0.1, attention_backend="pallas", scan_layers=True,
                        **small)
    setup = train_loop.build_trainer(model_config=config, partitioner=lambda: make_partitioner((-1, 1, 1), "data_parallel"), seed=0,
        optimizer=OptimizerConfig(train_steps=4000, learning_rate=5e-5, warmup_steps=60))
    n = jax.device_count()
    batch_size = rows_per_device * n
    spec = spec_for_device_kind(jax.devices()[0].device_kind)
    plan_device = spec or get_device_spec("h100")  # CPU smoke: any entry (the estimate is then meaningless)
    result = {"config": size, "num_params": config.num_params(), "batch": batch_size, "length": length,
              "devices": n, "device_kind": jax.devices()[0].device_kind, "attention": "pallas", "dtype": "bfloat16",
              "remat": config.remat_policy, "scan_layers": True, "dropout": 0.1,
              "plan_device": plan_device.name if spec else f"{plan_device.name} (no table entry for this device)"}
    t0 = time.perf_counter()
    plan = planning.plan_train(setup, batch_size=batch_size, length=length, device=plan_device,
                               eval_steps=False, compiler_options={})
    result["compile_s"] = time.perf_counter() - t0
    result["plan"] = {"analytic_bytes": plan.memory["analytic"]["total"], "compiled": plan.memory["compiled"],
                      "estimate": plan.estimate, "fits": plan.fits["fits"]}
    state = train_state.init_state(setup.model_config, setup.tx, setup.partitioner, seed=0)
    stream = SyntheticStream(batch_size, length, vocab_size=config.vocab_size, content_vocab=min(1000, config.vocab_size - 8),
                             min_source_length=8, max_source_length=min(200, length // 2 - 1))
    step_fn = plan.compiled_train_step
    times = []
    for i in range(steps + 2):  # two warm-up steps
        if i >= 2 and not budget.allows(15):
            result["note"] = f"stopped after {len(times)} timed steps: time budget"
            break
        batch = setup.trainer.global_batch(stream.get_batch(i), batch_size)
        start = time.perf_counter()
        state, metrics = step_fn(state, batch)
        loss = float(jax.device_get(metrics["loss"]))
        if i >= 2:
            times.append(time.perf_counter() - start)
    step_s = statistics.median(times) if times else float("nan")
    model_flops = plan.flops["model_flops_per_step"]
    result.update(step_s=step_s, step_times_s=times, loss=loss, tokens_per_s=batch_size * length / step_s,
                  tokens_per_s_per_device=batch_size * length / step_s / n, model_flops_per_step=model_flops)
    if spec is not None:
        result.update(peak_flops_per_device=spec.peak_flops, mfu=model_flops / step_s / (spec.peak_flops * n),
                      estimate_vs_measured=plan.estimate["step_s"] / step_s)
    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        result["measured_peak_bytes"] = int(stats["peak_bytes_in_use"])
    return result


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="device_check.json")
    p.add_argument("--smoke", action="store_true", help="interpret-mode kernels, tiny shapes (automatic on CPU)")
    p.add_argument("--budget_s", type=float, default=450.0)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--skip", nargs="*", default=[], choices=["kernel_check", "attention", "train_step"])
    args = p.parse_args(argv)
    smoke = args.smoke or jax.default_backend() == "cpu"
    interpret = jax.default_backend() == "cpu"
    budget = Budget(args.budget_s)
    started = time.perf_counter()
    report = {"jax": jax.__version__, "backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
              "device_kind": jax.devices()[0].device_kind, "smoke": smoke, "pallas_interpret": interpret,
              "flop_convention": "attention fwd = 4*B*H*T^2*D/2 (full causal), fwd+bwd = 3.5 x fwd; "
                                 "training: 6N + 12*L*H*Q*T per token (metrics.flops_per_token)"}
    sections = [("kernel_check", lambda: kernel_check(smoke=smoke, interpret=interpret, budget=budget)),
                ("train_step", lambda: train_step(smoke=smoke, budget=budget, steps=1 if smoke else args.steps)),
                ("attention", lambda: attention_table(smoke=smoke, interpret=interpret, budget=budget,
                                                      iters=1 if smoke else args.iters))]
    for name, run in sections:
        if name in args.skip:
            continue
        t0 = time.perf_counter()
        try:
            report[name] = run()
        except Exception as err:  # one broken section must not lose the others
            report[name] = {"error": _error(err), "traceback": traceback.format_exc()[-3000:]}
        report.setdefault("section_s", {})[name] = time.perf_counter() - t0
        with open(args.out, "w") as f:  # written after every section: a timeout keeps what finished
            json.dump({**report, "elapsed_s": time.perf_counter() - started}, f, indent=2, default=str)
    report["elapsed_s"] = time.perf_counter() - started
    report["kernel_check_passed"] = bool(report.get("kernel_check")) and all(
        r.get("passed", False) for r in report["kernel_check"] if "skipped" not in r) if isinstance(
        report.get("kernel_check"), list) else False
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2, default=str)
    print(f"wrote {args.out} in {report['elapsed_s']:.1f} s (kernel check passed: {report['kernel_check_passed']})")
    return report


if __name__ == "__main__":
    main()
