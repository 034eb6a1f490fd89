"""CPU training-step benchmark for the Llama family: optiml_jax (JAX/Flax) vs Hugging Face PyTorch LlamaForCausalLM.

Modelled on `train_step_cpu.py` (same method; read its docstring for the fairness rules): one step = forward +
backward + AdamW update on a [batch, length] block of random ids, float32, mean next-token cross-entropy over
all `length` positions, no dropout (Llama has none). Each framework runs in its own worker process and the
driver interleaves their steps; the ratio from one run is the number that counts.

Default model ('125m', not a published size): 12 layers x 768, 12 query / 4 key-value heads (GQA), SwiGLU
2048, vocab 32000, untied LM head, RoPE theta 10000: about 125M parameters, OPT-125m's budget. `--config tiny`
or '1b' use `LlamaConfig.preset`.

Each timed step also records the CPU seconds its worker process used (/proc), printed beside the wall
time with the per-pair ratio (torch / jax, > 1 means ours is faster): on a loaded shared machine the
median of per-pair ratios and the CPU-seconds ratio are steadier than either side's absolute wall time.

Same work check (on by default): the PyTorch model's initial weights are converted into our tree
(`convert.hf_llama.tensor_specs_llama`) and both sides compute the loss on the same tokens.

    python perf/llama_train_step_cpu.py                                   # full run (minutes)
    python perf/llama_train_step_cpu.py --config tiny --batch 2 --length 64 --steps 2   # smoke test
"""

from __future__ import annotations

import os
import pathlib
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # worker_process, step_pair

from bench_report import write_json  # noqa: E402
import step_pair  # noqa: E402

BENCH_125M = dict(num_layers=12, hidden_size=768, num_heads=12, num_kv_heads=4, ffn_dim=2048, vocab_size=32000,
                  max_position_embeddings=2048, rope_theta=10000.0, tie_word_embeddings=False, bos_token_id=1,
                  eos_token_id=2)


def _parse_args(argv=None):
    p = step_pair.step_arguments(__doc__, config_help="'125m' (this benchmark's shape) or a LlamaConfig preset")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--no_check_loss", dest="check_loss", action="store_false")
    return p.parse_args(argv)


def make_config(name: str, attention: str):
    from optiml_jax.models import LlamaConfig

    if name == "125m":
        return LlamaConfig(**BENCH_125M, attention_backend=attention)
    return LlamaConfig.preset(name, attention_backend=attention)


def _make_jax_step(config, batch, length):
    import jax
    import jax.numpy as jnp
    import optax

    from optiml_jax.models import init_model_params, model_for

    model = model_for(config)
    params = init_model_params(config, jax.random.key(0))
    tx = optax.adamw(1e-4, b1=0.9, b2=0.98, eps=1e-8, weight_decay=0.01)
    opt_state = tx.init(params)

    def loss_fn(params, tokens, targets):
        logits = model.apply({"params": params}, tokens)
        return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()

    def step(params, opt_state, tokens, targets):
        loss, grads = jax.value_and_grad(loss_fn)(params, tokens, targets)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    step = jax.jit(step, donate_argnums=(0, 1))
    ids = jnp.asarray(step_pair.random_ids(config, batch, length))
    tokens, targets = ids[:, :-1], ids[:, 1:]
    state = {"params": params, "opt_state": opt_state}

    def run():
        state["params"], state["opt_state"], loss = step(state["params"], state["opt_state"], tokens, targets)
        return float(loss)

    return run


def _torch_model(config):
    import transformers

    from optiml_jax.checkpoints.hf_llama import config_to_hf_llama

    return transformers.LlamaForCausalLM(transformers.AutoConfig.for_model(**config_to_hf_llama(config)))


def check_same_loss(config, batch: int, length: int) -> dict:
    from optiml_jax.checkpoints.hf_llama import tensor_specs_llama

    return step_pair.same_weights_loss(config, _torch_model, tensor_specs_llama(config), "", batch, length)


def _process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads (Linux /proc)."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed_with_cpu(remote) -> tuple[float, float]:
    """(wall s timed in the worker, CPU s the worker used) for one step.

    On a shared machine other processes stretch the wall time of whichever step they overlap; the CPU
    seconds a step consumes move much less with load, so both are reported (CPU time also counts threads
    spinning while they wait for work, which inflates both frameworks', OpenMP's usually more).
    """
    before = _process_cpu_s(remote.proc.pid)
    wall = remote.timed()
    return wall, _process_cpu_s(remote.proc.pid) - before


def jax_step_factory(config, args):
    return _make_jax_step(config, args.batch, args.length), ""


def torch_step_factory(config, args):
    run, attn = step_pair.make_torch_step(_torch_model, config, args.batch, args.length, args.threads)
    return run, f"torch {__import__('torch').__version__}: threads={args.threads} attn={attn}"


def _interleaved_times(ours, theirs, args):
    """--warmup untimed steps per side, then --steps timed ones alternating: (ours wall s, theirs wall s, ours CPU s,
    theirs CPU s), each a list per step (theirs empty with --skip_torch)."""
    for _ in range(args.warmup):
        ours.timed()
        if theirs:
            theirs.timed()
    ours_t, theirs_t, ours_cpu, theirs_cpu = [], [], [], []
    for i in range(args.steps):
        wall, cpu = timed_with_cpu(ours)
        ours_t.append(wall)
        ours_cpu.append(cpu)
        line = f"step {i}: jax {wall:.2f} s (cpu {cpu:.2f} s)"
        if theirs:
            wall, cpu = timed_with_cpu(theirs)
            theirs_t.append(wall)
            theirs_cpu.append(cpu)
            line += f"  torch {wall:.2f} s (cpu {cpu:.2f} s)  pair ratio torch/jax {theirs_t[-1] / ours_t[-1]:.2f}"
        print(line, flush=True)
    return ours_t, theirs_t, ours_cpu, theirs_cpu


def main(argv=None):
    args = _parse_args(argv)
    import jax

    from optiml_jax.kernels import resolve_backend
    from optiml_jax.training.metrics import flops_per_token
    from worker_process import RemoteStep

    config = make_config(args.config, args.attention)
    tokens_per_step = args.batch * args.length
    flops_per_step = flops_per_token(config, args.length) * tokens_per_step
    load_start = os.getloadavg()
    print(f"config={args.config} batch={args.batch} length={args.length} heads={config.num_heads}/"
          f"{config.num_kv_heads} attention={args.attention}->{resolve_backend(args.attention)} "
          f"params={config.num_params():,} devices={jax.devices()} loadavg={load_start}", flush=True)
    loss_check = step_pair.reported_loss_check(check_same_loss, config, args)
    peak = step_pair.reported_matmul_peak()

    ours = RemoteStep(jax_step_factory, config, args)
    print(f"jax (worker process): compile + first step {ours.first_s:.1f} s", flush=True)
    theirs = None if args.skip_torch else RemoteStep(torch_step_factory, config, args)
    if theirs:
        print(f"{theirs.info} (worker process)", flush=True)
    ours_t, theirs_t, ours_cpu, theirs_cpu = _interleaved_times(ours, theirs, args)
    ours.close()
    if theirs:
        theirs.close()

    def summary(times, cpu):
        return {**step_pair.step_summary(times, tokens_per_step, flops_per_step, peak), "steps_s": times,
                "cpu_s": cpu, "median_cpu_s": statistics.median(cpu)}

    result = {"command": " ".join(["python", *sys.argv]), "config": args.config, "batch": args.batch,
              "length": args.length, "attention": resolve_backend(args.attention), "threads": args.threads,
              "matmul_peak_gflops": peak / 1e9, "loadavg_start": load_start, "loadavg_end": os.getloadavg(),
              "step0_loss_check": loss_check, "jax": summary(ours_t, ours_cpu), "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    if theirs:
        result["torch"] = summary(theirs_t, theirs_cpu)
        result["speedup_tokens_per_s"] = result["jax"]["tokens_per_s"] / result["torch"]["tokens_per_s"]
        result["median_pair_ratio"] = statistics.median(t / o for t, o in zip(theirs_t, ours_t))
        result["cpu_ratio"] = result["torch"]["median_cpu_s"] / result["jax"]["median_cpu_s"]
    step_pair.print_summaries(result, ("jax", "torch"), load_start,
                              lambda s: f", {s['median_cpu_s']:.2f} CPU s/step")
    if "speedup_tokens_per_s" in result:
        print(f"ratio jax/torch tokens/s: {result['speedup_tokens_per_s']:.2f}x (medians); median of the "
              f"per-pair ratios {result['median_pair_ratio']:.2f}x; CPU-seconds ratio torch/jax "
              f"{result['cpu_ratio']:.2f}x")
    write_json(args.json_out, result)
    return result


if __name__ == "__main__":
    main()
