"""CPU training-step benchmark: optiml_jax (JAX/Flax) vs Hugging Face PyTorch OPT, side by side in one run.

What one step is, for both frameworks: forward + backward + AdamW update of an OPT model (default the
125m config: 12 x 768, vocab 50272) on a [batch, length] block of random token ids (default 4 x 512),
float32, dropout as configured (OPT default 0.1, training mode), next-token cross-entropy averaged
over all tokens (both sides predict the same `length` next tokens from the same `length` inputs).
Attention: `--attention auto` (default) resolves to the CPU-tuned 'xla' backend on CPU
(`optiml_jax/kernels/xla_attention.py`); `--attention reference` times the plain reference backend.

Same work check (`--check_loss`, on by default): before timing, the PyTorch model's initial weights are
converted into our parameter tree and both sides compute the dropout-free loss on the same tokens; the
two losses are printed and must agree to float32 rounding.

Threads: the JAX CPU client uses the machine's cores through its Eigen thread pool (this machine has 2);
PyTorch is pinned with `torch.set_num_threads(--threads)` (default 2). Pass `--threads` equal to the core
count so both sides use the same hardware.

Fairness: steps are interleaved (ours, theirs, ours, theirs, ...) after separate warm-up steps, so
noise from other processes on a shared machine hits both sides alike; the ratio from one run is the
number that counts. A float32 2048^3 `jnp.dot` is timed in the same run and used as the peak for MFU.
By default each framework lives in its own worker process (`--isolation process`) and this driver asks
them for one step at a time, alternating: that is how either is used in practice, and it removes the
cross-framework interference measured when both share a process (allocator and thread-pool state: the
JAX step ran 20-30% slower next to the torch model). `--isolation shared` keeps the old method.
The run also prints the ceiling: the ratio a step at 100% of the measured matmul peak would reach.

Model FLOPs per token (training, full causal attention, no halving for the mask):
    6 * N + 12 * L * H * Q * T
with N = `config.num_params()` (all parameters, the tied embedding/LM head counted once), L layers,
H heads, Q head dim, T sequence length (PaLM appendix B convention).

    python perf/train_step_cpu.py                          # full 125m run (several minutes)
    python perf/train_step_cpu.py --config tiny --batch 2 --length 64 --steps 2   # smoke test
"""

from __future__ import annotations

import os
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # worker_process, step_pair

from bench_report import write_json  # noqa: E402
from step_pair import (  # noqa: E402
    make_torch_step,
    print_summaries,
    random_ids,
    reported_loss_check,
    reported_matmul_peak,
    same_weights_loss,
    step_arguments,
    step_summary,
)


def _parse_args(argv=None):
    p = step_arguments(__doc__, config_help="OPTConfig preset name (125m, tiny, ...)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per framework after compilation")
    p.add_argument("--dropout", type=float, default=None, help="override dropout rate (default: config's 0.1)")
    p.add_argument("--prng", default="threefry2x32", choices=["threefry2x32", "rbg", "unsafe_rbg"],
                   help="JAX PRNG implementation used for dropout masks")
    p.add_argument("--no_check_loss", dest="check_loss", action="store_false",
                   help="skip the step-0 same-weights loss comparison with PyTorch")
    p.add_argument("--loss_chunk", type=int, default=None,
                   help="JAX: LM head + CE this many positions at a time (optiml_jax.training.chunked_cross_entropy)")
    p.add_argument("--isolation", default="process", choices=["process", "shared"],
                   help="process (default): each framework in its own worker process, steps still interleaved "
                        "by this driver; shared: both in this process (the earlier method: the JAX step ran "
                        "20-30%% slower with the torch model in the same process)")
    return p.parse_args(argv)


def _make_jax_step(config, batch, length, prng, loss_chunk=None):
    import jax
    import jax.numpy as jnp
    import optax

    from optiml_jax.models import OPT, init_params, tied_embedding
    from optiml_jax.training.chunked_cross_entropy import chunked_cross_entropy

    model = OPT(config)
    params = init_params(config, jax.random.key(0))
    tx = optax.adamw(1e-4, b1=0.9, b2=0.98, eps=1e-8, weight_decay=0.01)
    opt_state = tx.init(params)

    def loss_fn(params, tokens, targets, dropout_key):
        if loss_chunk:
            features = model.apply({"params": params}, tokens, deterministic=False, rngs={"dropout": dropout_key},
                                   return_features=True)
            weights = jnp.full(targets.shape, 1.0 / targets.size, jnp.float32)
            return chunked_cross_entropy(config, loss_chunk, features, tied_embedding(params), targets, weights)[0]
        logits = model.apply({"params": params}, tokens, deterministic=False, rngs={"dropout": dropout_key})
        # Integer-label cross-entropy: no [B, L, V] one-hot is materialised.
        return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()

    def step(params, opt_state, tokens, targets, key):
        key, dropout_key = jax.random.split(key)
        loss, grads = jax.value_and_grad(loss_fn)(params, tokens, targets, dropout_key)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, key

    step = jax.jit(step, donate_argnums=(0, 1, 4))
    rng = jax.random.key(123, impl=prng)
    ids = jnp.asarray(random_ids(config, batch, length))
    tokens, targets = ids[:, :-1], ids[:, 1:]
    state = {"params": params, "opt_state": opt_state, "key": rng}

    def run():
        state["params"], state["opt_state"], loss, state["key"] = step(
            state["params"], state["opt_state"], tokens, targets, state["key"]
        )
        return float(loss)  # blocks until the step is done

    return run


def _torch_model(config):
    from transformers import OPTConfig as HFConfig
    from transformers import OPTForCausalLM

    hf_config = HFConfig(
        vocab_size=config.vocab_size, hidden_size=config.hidden_size, num_hidden_layers=config.num_layers,
        ffn_dim=config.ffn_dim, num_attention_heads=config.num_heads,
        max_position_embeddings=config.max_position_embeddings, word_embed_proj_dim=config.embed_dim,
        do_layer_norm_before=config.do_layer_norm_before, dropout=config.dropout_rate,
        attention_dropout=config.attention_dropout_rate, pad_token_id=config.pad_token_id,
    )
    return OPTForCausalLM(hf_config)


def _make_torch_step(config, batch, length, threads):
    return make_torch_step(_torch_model, config, batch, length, threads)


def check_same_loss(config, batch: int, length: int) -> dict:
    """Step-0 sanity: PyTorch's initial weights -> our tree; dropout-free loss on the same tokens, both sides."""
    import dataclasses

    from optiml_jax.checkpoints.hf import tensor_specs

    config = dataclasses.replace(config, dropout_rate=0.0)
    return same_weights_loss(config, _torch_model, tensor_specs(config), "model.", batch, length)


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def jax_step_factory(config, args):
    """For worker_process.RemoteStep: (run, info) of our JAX step."""
    return _make_jax_step(config, args.batch, args.length, args.prng, args.loss_chunk), ""


def torch_step_factory(config, args):
    """For worker_process.RemoteStep: (run, info) of the Hugging Face PyTorch step."""
    run, attn = _make_torch_step(config, args.batch, args.length, args.threads)
    return run, f"torch {__import__('torch').__version__}: threads={args.threads} attn={attn}"


def _steppers(config, args):
    """(ours_timed, theirs_timed or None, close): callables timing one step of each side, each in its own worker
    process (`--isolation process`) or both in this one (`shared`)."""
    if args.isolation == "process":
        from worker_process import RemoteStep

        ours = RemoteStep(jax_step_factory, config, args)
        print(f"jax (worker process): compile + first step {ours.first_s:.1f} s", flush=True)
        theirs = None if args.skip_torch else RemoteStep(torch_step_factory, config, args)
        if theirs:
            print(f"{theirs.info} (worker process)", flush=True)

        def close():
            ours.close()
            if theirs:
                theirs.close()

        return ours.timed, (theirs.timed if theirs else None), close
    t0 = time.perf_counter()
    ours_fn = _make_jax_step(config, args.batch, args.length, args.prng, args.loss_chunk)
    ours_fn()  # compile + first step
    print(f"jax: compile + first step {time.perf_counter() - t0:.1f} s", flush=True)
    ours_timed, theirs_timed = (lambda: _time(ours_fn)), None
    if not args.skip_torch:
        theirs_fn, attn_impl = _make_torch_step(config, args.batch, args.length, args.threads)
        print(f"torch {__import__('torch').__version__}: threads={args.threads} attn={attn_impl}", flush=True)
        theirs_timed = lambda: _time(theirs_fn)  # noqa: E731
    return ours_timed, theirs_timed, lambda: None


def _interleaved_times(ours_timed, theirs_timed, args) -> tuple[list[float], list[float]]:
    """--warmup untimed steps per side, then --steps timed ones, ours and theirs alternating."""
    for _ in range(args.warmup):
        ours_timed()
        if theirs_timed:
            theirs_timed()
    ours_t, theirs_t = [], []
    for i in range(args.steps):
        ours_t.append(ours_timed())
        if theirs_timed:
            theirs_t.append(theirs_timed())
        print(f"step {i}: jax {ours_t[-1]:.2f} s" + (f"  torch {theirs_t[-1]:.2f} s" if theirs_timed else ""),
              flush=True)
    return ours_t, theirs_t


def main(argv=None):
    args = _parse_args(argv)
    import jax

    from optiml_jax.models import OPTConfig
    from optiml_jax.training.metrics import flops_per_token

    overrides = {"attention_backend": args.attention}
    if args.dropout is not None:
        overrides["dropout_rate"] = args.dropout
    config = OPTConfig.preset(args.config, **overrides)
    tokens_per_step = args.batch * args.length
    flops_per_step = flops_per_token(config, args.length) * tokens_per_step
    from optiml_jax.kernels import resolve_backend

    load_start = os.getloadavg()
    print(f"config={args.config} batch={args.batch} length={args.length} dropout={config.dropout_rate} "
          f"attention={args.attention}->{resolve_backend(args.attention)} prng={args.prng} "
          f"params={config.num_params():,} devices={jax.devices()} cpu_count={os.cpu_count()} "
          f"loadavg={load_start}", flush=True)
    loss_check = reported_loss_check(check_same_loss, config, args, "step-0 same-weights loss (dropout off)")
    peak = reported_matmul_peak()

    ours_timed, theirs_timed, close = _steppers(config, args)
    ours_t, theirs_t = _interleaved_times(ours_timed, theirs_timed, args)
    close()

    summary = lambda times: step_summary(times, tokens_per_step, flops_per_step, peak)  # noqa: E731
    result = {"command": " ".join(["python", *sys.argv]), "config": args.config, "batch": args.batch,
              "length": args.length, "dropout": config.dropout_rate, "attention": resolve_backend(args.attention),
              "prng": args.prng, "threads": args.threads, "matmul_peak_gflops": peak / 1e9,
              "isolation": args.isolation, "loss_chunk": args.loss_chunk,
              "ideal_step_s_at_peak": flops_per_step / peak,
              "loadavg_start": load_start, "loadavg_end": os.getloadavg(), "step0_loss_check": loss_check,
              "flops_per_token": flops_per_token(config, args.length), "jax": summary(ours_t)}
    if theirs_t:
        result["torch"] = summary(theirs_t)
        result["speedup_tokens_per_s"] = result["jax"]["tokens_per_s"] / result["torch"]["tokens_per_s"]
    print_summaries(result, ("jax", "torch"), load_start)
    if "speedup_tokens_per_s" in result:
        print(f"ratio jax/torch tokens/s: {result['speedup_tokens_per_s']:.2f}x")
        # Ceiling: every model FLOP at the measured matmul peak, zero time for anything else.
        ceiling = result["torch"]["median_s"] / result["ideal_step_s_at_peak"]
        result["max_possible_ratio_at_peak"] = ceiling
        print(f"ceiling: a step at 100% of the measured matmul peak ({result['ideal_step_s_at_peak']:.2f} s) would be "
              f"{ceiling:.2f}x torch")
    write_json(args.json_out, result)
    return result


if __name__ == "__main__":
    main()
