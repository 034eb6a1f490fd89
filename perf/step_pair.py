"""What the JAX-vs-PyTorch step benchmarks share (`train_step_cpu.py` for OPT, `llama_train_step_cpu.py` for the
Llama family, `train_throughput.py` for the whole trainer step): the token block both sides train on, the
PyTorch step and loss, the step-0 same-weights check, and the per-side summary.

Both sides predict the same `length` next tokens from the same `length` inputs: ids [batch, length + 1], inputs
ids[:, :-1], targets ids[:, 1:].
"""

from __future__ import annotations

import statistics


def random_ids(config, batch: int, length: int):
    """[batch, length + 1] token ids shared by both frameworks (inputs = [:, :-1], targets = [:, 1:])."""
    import numpy as np

    return np.random.default_rng(7).integers(4, config.vocab_size, (batch, length + 1), dtype=np.int32)


def torch_loss(model, ids):
    """Mean next-token CE over all `length` positions: inputs ids[:, :-1], targets ids[:, 1:].

    Computed here rather than with HF's `labels=` (which shifts inside the model and so predicts only
    length - 1 tokens) so both frameworks do exactly the same work.
    """
    import torch.nn.functional as F

    logits = model(input_ids=ids[:, :-1]).logits
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))


def make_torch_step(torch_model, config, batch: int, length: int, threads: int):
    """(run, attention implementation): one AdamW training step of `torch_model(config)` per `run()`."""
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = torch_model(config).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-8, weight_decay=0.01)
    ids = torch.from_numpy(random_ids(config, batch, length)).long()

    def run():
        opt.zero_grad(set_to_none=True)
        loss = torch_loss(model, ids)
        loss.backward()
        opt.step()
        return float(loss.detach())

    return run, getattr(model.config, "_attn_implementation", "?")


def same_weights_loss(config, torch_model, specs, strip_prefix: str, batch: int, length: int) -> dict:
    """Step-0 sanity: PyTorch's initial weights -> our tree (through the converter's `specs`, state-dict keys less
    `strip_prefix`); the loss of both sides on the same tokens, which must agree to float32 rounding."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    import torch

    from optiml_jax.models import model_for

    torch.manual_seed(0)
    model = torch_model(config).eval()
    state = {k.removeprefix(strip_prefix): v for k, v in model.state_dict().items()}
    params: dict = {}
    for spec in specs:
        node = params
        for name in spec.path[:-1]:
            node = node.setdefault(name, {})
        node[spec.path[-1]] = jnp.asarray(np.ascontiguousarray(spec.to_ours(state[spec.hf_key].float().numpy())))
    ids = random_ids(config, batch, length)
    with torch.no_grad():
        theirs = float(torch_loss(model, torch.from_numpy(ids).long()))
    logits = jax.jit(lambda p, t: model_for(config).apply({"params": p}, t))(params, ids[:, :-1])
    ours = float(optax.softmax_cross_entropy_with_integer_labels(logits, ids[:, 1:]).mean())
    return {"jax": ours, "torch": theirs, "abs_diff": abs(ours - theirs)}


def step_summary(times: list[float], tokens_per_step: int, flops_per_step: float, peak: float) -> dict:
    """Median and best step time, tokens/s, model GFLOP/s and MFU against the measured matmul `peak`."""
    med = statistics.median(times)
    return {"median_s": med, "min_s": min(times), "tokens_per_s": tokens_per_step / med,
            "model_gflops_per_s": flops_per_step / med / 1e9, "mfu": flops_per_step / med / peak}


def reported_loss_check(check_same_loss, config, args, label: str = "step-0 same-weights loss") -> dict | None:
    """`check_same_loss(config, batch, length)` printed on one line; None when skipped (--no_check_loss or
    --skip_torch)."""
    if not args.check_loss or args.skip_torch:
        return None
    check = check_same_loss(config, args.batch, args.length)
    print(f"{label}: jax {check['jax']:.6f} torch {check['torch']:.6f} |diff| {check['abs_diff']:.2e}", flush=True)
    return check


def reported_matmul_peak() -> float:
    """The float32 2048^3 `jnp.dot` FLOP/s measured in this run (the MFU peak), printed."""
    from optiml_jax.training.metrics import measure_matmul_peak

    peak = measure_matmul_peak(repeats=5)
    print(f"matmul peak (f32 2048^3 jnp.dot): {peak / 1e9:.1f} GFLOP/s", flush=True)
    return peak


def print_summaries(result: dict, names: tuple[str, ...], load_start, extra=lambda summary: "") -> None:
    """One line per side present in `result` (`step_summary` fields, then `extra(summary)`), and the load average
    at the start and the end of the run."""
    for name in names:
        if name in result:
            s = result[name]
            print(f"{name:5s}: {s['median_s']:.2f} s/step (median), {s['tokens_per_s']:.1f} tokens/s, "
                  f"{s['model_gflops_per_s']:.1f} model-GFLOP/s, MFU {100 * s['mfu']:.1f}% of measured peak"
                  + extra(s))
    print(f"load average (1/5/15 min): start {load_start}, end {result['loadavg_end']}")


def step_arguments(description: str, config_default: str = "125m", config_help: str | None = None):
    """The parser every step benchmark starts from: the model (--config), the token block (--batch x --length),
    timed --steps, torch --threads, the --attention backend, --skip_torch and --json_out; a script adds its own."""
    import argparse

    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=config_default, help=config_help)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--length", type=int, default=512)
    p.add_argument("--steps", type=int, default=3, help="timed steps per framework (interleaved)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads; JAX uses all cores")
    p.add_argument("--attention", default="auto", help="attention backend (auto = the CPU-tuned 'xla' on CPU)")
    p.add_argument("--skip_torch", action="store_true", help="time only the JAX step")
    p.add_argument("--json_out", default=None, help="also write the results as JSON here")
    return p
