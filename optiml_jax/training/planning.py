"""Plan a training run for a pod this host does not have: compile its sharded step on abstract shapes.

Why: a 30B or 175B run that does not fit, or that a logical-axis rule silently replicates, fails minutes
into a pod allocation. `plan_train` takes the `TrainerSetup` that `train()` itself builds
(`train_loop.build_trainer`: same mesh, rules, optimizer, attention backend and jitted step) and lowers
and compiles `Trainer.train_step` (and the eval and generation steps) on `jax.ShapeDtypeStruct`s that
carry the run's shardings, over N fake CPU devices. Nothing is allocated: a 175B state is described,
never materialised. From that it reports, per device:

- bytes from the sharding specs (exact: parameters, Adam state, gradients, batch) plus an analytic
  activation model (`activation_bytes`), and XLA's own `compiled.memory_analysis()`; both, and why they
  differ (XLA:CPU computes bf16 dots in f32 and keeps those f32 results, see `CPU_NOTE`);
- whether that fits the device kind's HBM with headroom (`device_specs`);
- model FLOPs per step (the MFU convention of `metrics.flops_per_token`) and hardware FLOPs (+ remat);
- every collective of the compiled program with its bytes (`hlo_collectives`), and an estimated step
  time and MFU from the device's peak FLOP/s and link bandwidth (`estimate_step_time` states the model);
- flags for logical-axis rules that leave a large tensor replicated.
"""

from __future__ import annotations

import dataclasses
import math
import resource
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from optiml_jax.models import OPTConfig
from optiml_jax.training import hlo_collectives, train_state
from optiml_jax.training.device_specs import DeviceSpec
from optiml_jax.training.metrics import flops_per_token
from optiml_jax.training.step_estimate import (
    layer_params,
    collective_table,
    estimate_step_time,
    flop_split_per_token,
    hbm_bytes_per_step,
)
from optiml_jax.training.synthetic_data import FEATURES

GiB = 2**30
# Compile options for planning: LLVM optimisation off (buffer assignment, hence memory_analysis, and the
# HLO are unchanged; measured: identical memory stats, compile 35-40% faster).
PLAN_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}
FLASH_BACKENDS = ("pallas", "splash", "cudnn")
TPU_NOTE = ("compiled by the TPU compiler for abstract devices of a TPU topology (libtpu, no TPU attached; "
            "training.tpu_aot): memory_analysis and collectives are what the slice would run; the fit verdict uses "
            "the compiled total")
CPU_NOTE = ("XLA:CPU has no bf16 matmul: its float-normalization pass runs every bf16 dot in f32 and XLA keeps "
            "the f32 results, so saved activations, TP all-reduces and FSDP all-gathers appear in f32 in the "
            "compiled CPU program where a GPU/TPU keeps bf16; it also emits gradient reductions as all-reduce + "
            "slice where GPU/TPU XLA emits reduce-scatter. Compiled temp bytes are therefore an upper bound "
            "(up to ~2x the activations); the fit verdict uses the spec bytes + the analytic activation model.")


def shard_bytes(x: jax.ShapeDtypeStruct) -> int:
    """Bytes one device holds of an array with a sharding (the largest shard: uneven splits round up)."""
    shape = x.sharding.shard_shape(x.shape) if x.sharding is not None else x.shape
    return int(np.prod(shape, dtype=np.int64)) * jnp.dtype(x.dtype).itemsize


def global_bytes(x) -> int:
    return int(np.prod(x.shape, dtype=np.int64)) * jnp.dtype(x.dtype).itemsize


def abstract_batch(partitioner, batch_size: int, length: int) -> dict[str, jax.ShapeDtypeStruct]:
    """The global batch `Trainer.global_batch` builds (batch contract: 5 features [batch, length])."""
    sharding = partitioner.batch_sharding
    return {k: jax.ShapeDtypeStruct((batch_size, length), jnp.float32 if k == "decoder_loss_weights" else jnp.int32,
                                    sharding=sharding) for k in FEATURES}


def _tree_bytes(tree, fn) -> int:
    return int(sum(fn(x) for x in jax.tree.leaves(tree)))


def activation_bytes(config: OPTConfig, rows: int, length: int, tensor: int, embed_sharded: int,
                     loss_chunk_size: int | None) -> dict[str, int]:
    """Analytic activation memory per device for one (micro)batch of `rows` rows on this device.

    Per layer, without remat (Korthikanti et al. 2022, "Reducing Activation Recomputation", eq. 2,
    generalised to compute dtype c bytes): s*b*h*(4c + 2) for the layer-norm inputs/outputs, the residual
    and two 1-byte dropout masks, plus s*b*h/t*(4c + 2c*ffn/h) for q, k, v, the attention output and the
    MLP hidden (t = tensor-parallel size), plus the attention scores c*a*s^2*b/t when the backend
    materialises them (reference / xla; flash kernels keep only the log-sum-exp). `remat_policy`:
    full = one c*s*b*h layer input per layer + one layer recomputed at a time; dots / dots_with_no_batch_dims
    = the matmul outputs per layer + one layer. Logits: f32 [b, s, vocab/t] and their gradient, unless
    `loss_chunk_size` (then one chunk's). `embed_sharded` divides the s*b*h terms when a rule shards
    activation_embed / activation_length (sequence parallelism).
    """
    c = 2 if config.dtype == "bfloat16" else 4
    s, b, h, a, f = length, rows, config.hidden_size, config.num_heads, config.ffn_dim
    sbh = s * b * h
    masks = 2 if config.dropout_rate > 0 else 0
    flash = any(config.attention_backend.startswith(name) for name in FLASH_BACKENDS)
    scores = 0 if flash else 4 * a * s * s * b // tensor  # f32 probabilities of the reference backends
    lse = 4 * a * s * b // tensor if flash else 0
    full_layer = sbh * (4 * c + masks) // embed_sharded + sbh * (4 * c + 2 * c * f // h) // tensor + scores + lse
    policy = config.remat_policy
    if policy == "none":
        saved = full_layer
        working = 0
    elif policy == "full":
        saved = c * sbh // embed_sharded
        working = full_layer
    else:  # dots: the layer input, out-projection and fc2 outputs (h wide), q, k, v and fc1 outputs (/t)
        saved = 3 * c * sbh // embed_sharded + c * sbh * (3 + f // h) // tensor
        working = full_layer
    vocab = config.vocab_size // tensor
    logit_positions = (min(loss_chunk_size, s) if loss_chunk_size else s) * b
    return {"saved_per_layer": int(saved), "layers": int(config.num_layers * saved), "recompute_working_set": int(working),
            "embeddings": int(2 * c * sbh // embed_sharded), "logits": int(2 * 4 * logit_positions * vocab)}


def _spec_axes(spec) -> list[tuple[str, ...]]:
    out = []
    for entry in spec:
        out.append(() if entry is None else ((entry,) if isinstance(entry, str) else tuple(entry)))
    return out


def _param_collective_keys(params_abstract, mesh, scanned: bool, num_layers: int) -> set[tuple[int, int]]:
    """(elements, group size) of every gather/reduction a parameter (or its gradient) can need: the device's
    shard times any subset of the mesh axes it is split over, per layer for a scanned stack."""
    keys = set()
    for leaf in jax.tree.leaves(params_abstract):
        per_device = int(np.prod(leaf.sharding.shard_shape(leaf.shape), dtype=np.int64))
        axes = sorted({a for dim in _spec_axes(leaf.sharding.spec) for a in dim if mesh.shape[a] > 1})
        if axes:  # a shard moved whole between two devices: the TPU compiler's decomposed (permute) all-gathers
            keys.update({(per_device, 1)} | ({(per_device // num_layers, 1)} if scanned else set()))
        for mask in range(1, 2 ** len(axes)):
            group = int(np.prod([mesh.shape[a] for i, a in enumerate(axes) if mask >> i & 1]))
            for count in {per_device * group} | ({per_device * group // num_layers} if scanned else set()):
                keys.add((count, group))
    return keys


def _memory_stats(compiled) -> dict:
    ma = compiled.memory_analysis()
    stats = {k: int(getattr(ma, f"{k}_size_in_bytes")) for k in ("argument", "output", "alias", "temp",
                                                                  "generated_code")}
    stats["total"] = stats["argument"] + stats["output"] - stats["alias"] + stats["temp"]
    return stats


def _replication_flags(params_abstract, logical_specs, mesh, min_bytes: int) -> list[dict]:
    """Parameters that some mesh axis of size > 1 leaves whole on every device, when the copy is large."""
    flags = []
    leaves = jax.tree_util.tree_leaves_with_path(params_abstract)
    specs = jax.tree.leaves(logical_specs, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
    for (path, leaf), logical in zip(leaves, specs):
        used = {a for dim in _spec_axes(leaf.sharding.spec) for a in dim}
        over = [a for a in mesh.axis_names if mesh.shape[a] > 1 and a not in used]
        per_device = shard_bytes(leaf)
        if over and per_device * 4 >= min_bytes:  # the param + its gradient + two Adam moments, all f32
            unmapped = [name for name, dim in zip(tuple(logical), _spec_axes(leaf.sharding.spec))
                        if name is not None and not dim]
            flags.append({"tensor": jax.tree_util.keystr(path), "shape": list(leaf.shape),
                          "logical_axes": list(logical), "mesh_spec": str(leaf.sharding.spec),
                          "replicated_over": over, "unmapped_logical_axes": unmapped,
                          "per_device_bytes_with_grad_and_adam": per_device * 4,
                          "message": f"{jax.tree_util.keystr(path)} {tuple(leaf.shape)} is replicated over mesh axes "
                                     f"{over}: logical axes {unmapped or list(logical)} map to no mesh axis"})
    return sorted(flags, key=lambda f: -f["per_device_bytes_with_grad_and_adam"])


def fit_report(analytic_total: int, compiled_total: int, device: DeviceSpec, headroom: float,
               compiled_is_target: bool = False) -> dict:
    """Fits when the bytes leave `headroom` of HBM free (XLA/NCCL workspace, fragmentation): the spec +
    analytic bytes for a CPU compile (an upper bound there), the compiled total for a TPU compile."""
    usable = int(device.hbm_bytes * (1 - headroom))
    basis = compiled_total if compiled_is_target else analytic_total
    return {"hbm_bytes": device.hbm_bytes, "headroom": headroom, "usable_bytes": usable,
            "basis": "compiled (TPU compiler)" if compiled_is_target else "spec + analytic",
            "fits": basis <= usable, "fits_compiled_upper_bound": compiled_total <= usable,
            "analytic_fraction_of_hbm": analytic_total / device.hbm_bytes,
            "compiled_fraction_of_hbm": compiled_total / device.hbm_bytes}


@dataclasses.dataclass
class Plan:
    """Everything `plan_train` found; `to_dict()` is the JSON the CLI writes."""

    device: dict
    mesh: dict
    run: dict
    memory: dict
    fits: dict
    flops: dict
    collectives: list[dict]
    estimate: dict
    flags: list[dict]
    eval_steps: dict
    notes: list[str]
    planner: dict
    compiled_train_step: Any = dataclasses.field(default=None, repr=False, compare=False)  # callable executable

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "compiled_train_step"}


def _compile(lowerable, *args, options=None):
    lowered = lowerable.lower(*args)
    return lowered.compile(compiler_options=PLAN_COMPILER_OPTIONS if options is None else options)


def plan_train(setup, *, batch_size: int, length: int, device: DeviceSpec, headroom: float = 0.1,
               matmul_efficiency: float | None = None, attention_efficiency: float = 0.4,
               flag_min_bytes: int = 64 * 2**20,
               eval_steps: bool = True, generation: dict | None = None,
               compiler_options: dict | None = None, target: str = "cpu") -> Plan:
    """Lower and compile `setup.trainer.train_step` on abstract inputs and size it for `device`.

    `setup` is `train_loop.build_trainer(...)`'s result. `generation` = dict(batch, prompt_length,
    max_new_tokens) also compiles `models.generate` with the training parameter shardings.
    `compiler_options` default to `PLAN_COMPILER_OPTIONS`; pass {} to compile for running (the device check
    runs `plan.compiled_train_step`, so what it measures is exactly what was planned).
    `target`: "cpu" (the partitioner's devices are fake CPU devices) or "tpu" (abstract TPU topology devices,
    `tpu_aot`: kernels lower to Mosaic, memory and collectives come from the TPU compiler).
    """
    on_tpu = target == "tpu"
    kernels = _kernel_context(on_tpu)
    part, trainer, config = setup.partitioner, setup.trainer, setup.model_config
    mesh, n = part.mesh, part.mesh.size
    state = train_state.abstract_state(config, setup.tx, part)
    batch = abstract_batch(part, batch_size, length)
    with kernels():
        compiled = _compile(trainer.train_step, state, batch, options=({} if on_tpu else compiler_options))
    summary = hlo_collectives.analyse_hlo(compiled.as_text(), n)
    shape = _RunShape.of(setup, batch_size)
    memory, act = _memory_section(setup, state, batch, shape, length, compiled, summary)
    fits = fit_report(memory["analytic"]["total"], memory["compiled"]["total"], device, headroom,
                      compiled_is_target=on_tpu)
    flops, table, est = _time_section(setup, state, shape, batch_size, length, device, summary, on_tpu,
                                      matmul_efficiency, attention_efficiency, memory["spec"]["params"])
    flags = _flags(setup, state, shape, act, flag_min_bytes)
    notes = _notes(state, device, summary, on_tpu)
    evals = _eval_sections(setup, state, batch, kernels, on_tpu, eval_steps, generation)
    run = {"batch_size": batch_size, "length": length, "rows_per_device": shape.rows,
           "data_shards": part.data_shard_count, "tensor_parallel": shape.tensor,
           "num_microbatches": trainer.num_microbatches,
           "loss_chunk_size": trainer.loss_chunk_size, "remat_policy": config.remat_policy,
           "scan_layers": config.scan_layers, "attention_backend": config.attention_backend,
           "compute_dtype": config.dtype, "num_params": config.num_params(), "rules": [list(r) for r in part.rules],
           "compiled_for": target, "custom_calls": summary.custom_calls}
    return Plan(
        device=device.to_dict(), mesh={"shape": dict(mesh.shape), "devices": n}, run=run, memory=memory, fits=fits,
        flops=flops, collectives=[dataclasses.asdict(r) for r in table], estimate=est, flags=flags, eval_steps=evals,
        notes=notes, planner={"peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024},
        compiled_train_step=compiled)


def _kernel_context(on_tpu: bool):
    """What kernels lower under: Mosaic for an abstract TPU topology, nothing special on CPU."""
    if on_tpu:
        from optiml_jax.training import tpu_aot

        return tpu_aot.mosaic_kernels
    import contextlib

    return contextlib.nullcontext


@dataclasses.dataclass(frozen=True)
class _RunShape:
    """How the mesh splits one step: rows per device, tensor-parallel ways, ways the embedding is split."""

    rows: int
    tensor: int
    embed_sharded: int

    @classmethod
    def of(cls, setup, batch_size: int) -> "_RunShape":
        part, trainer = setup.partitioner, setup.trainer
        mesh = part.mesh
        tensor = int(np.prod([mesh.shape[a] for a in part.mesh_axes("activation_heads")])) or 1
        embed_sharded = int(np.prod([mesh.shape[a] for a in set(part.mesh_axes("activation_embed"))
                                     | set(part.mesh_axes("activation_length"))])) or 1
        rows = math.ceil(batch_size / part.data_shard_count / max(trainer.num_microbatches, 1))
        return cls(rows, tensor, embed_sharded)


def _memory_section(setup, state, batch, shape: _RunShape, length: int, compiled, summary) -> tuple[dict, dict]:
    """Per-device bytes: exact from the sharding specs, analytic activations, and XLA's memory analysis."""
    part, trainer, config = setup.partitioner, setup.trainer, setup.model_config
    compiled_mem = _memory_stats(compiled)
    params_b = _tree_bytes(state.params, shard_bytes)
    opt_b = _tree_bytes(state.opt_state, shard_bytes)
    grads_b = params_b  # float32 gradients, sharded like the parameters (the optimizer consumes them so)
    accum_b = grads_b if trainer.num_microbatches > 1 else 0  # the scan's float32 accumulator beside them
    batch_b = _tree_bytes(batch, shard_bytes)
    act = activation_bytes(config, shape.rows, length, shape.tensor, shape.embed_sharded, trainer.loss_chunk_size)
    fsdp = any(part.mesh.shape[a] > 1 for a in part.mesh_axes("embed"))  # parameters gathered per layer (FSDP)
    gathered = 2 * (2 if config.dtype == "bfloat16" else 4) * layer_params(config) // shape.tensor if fsdp else 0
    workspace = gathered + params_b  # gathered layer weights + the optimizer's float32 update tree
    analytic_total = (params_b + opt_b + grads_b + accum_b + batch_b + act["layers"] + act["recompute_working_set"]
                      + act["embeddings"] + act["logits"] + workspace)
    memory = {
        "spec": {"params": params_b, "opt_state": opt_b, "grads": grads_b, "grad_accumulator": accum_b,
                 "batch": batch_b, "state_and_batch": params_b + opt_b + batch_b + 4},
        "analytic": {**act, "gathered_weights_and_update_workspace": workspace, "total": analytic_total},
        "compiled": compiled_mem,
        "compiled_vs_spec": {
            "argument_minus_state_and_batch": compiled_mem["argument"] - (params_b + opt_b + batch_b + 4),
            "temp_over_analytic_non_state": compiled_mem["temp"] / max(analytic_total - params_b - opt_b - batch_b, 1)},
        "largest_compiled_arrays": [{"array": str(a), "count": c, "bytes": a.bytes} for a, c in summary.arrays],
    }
    return memory, act


def _time_section(setup, state, shape: _RunShape, batch_size: int, length: int, device: DeviceSpec, summary,
                  on_tpu: bool, matmul_efficiency, attention_efficiency, params_b: int):
    """FLOPs per step, the collective table and the estimated step time / MFU."""
    mesh, config = setup.partitioner.mesh, setup.model_config
    n = mesh.size
    tokens = batch_size * length
    split = {k: v * tokens for k, v in flop_split_per_token(config, length).items()}
    model_flops, hw_flops = split["model"], split["matmul"] + split["attention"]
    hbm = hbm_bytes_per_step(config, tokens / n * shape.tensor, params_b / 4, shape.tensor)
    table = collective_table(summary, device=device, mesh=mesh, compute_dtype="n/a" if on_tpu else config.dtype,
                             param_keys=_param_collective_keys(state.params, mesh, config.scan_layers,
                                                               config.num_layers))
    est = estimate_step_time(device, {k: v / n for k, v in split.items()}, hbm, table, matmul_efficiency,
                             attention_efficiency)
    est["tokens_per_s"] = tokens / est["step_s"]
    est["tokens_per_s_per_device"] = tokens / est["step_s"] / n
    for key, step in (("mfu", "step_s"), ("mfu_perfect_overlap", "step_s_perfect_overlap"),
                      ("mfu_no_overlap", "step_s_no_overlap")):
        est[key] = model_flops / (est[step] * n * device.peak_flops)
    flops = {"model_flops_per_step": model_flops, "hardware_flops_per_step": hw_flops,
             "hardware_matmul_flops_per_step": split["matmul"], "hardware_attention_flops_per_step": split["attention"],
             "memory_bound_hbm_bytes_per_device": hbm,
             "model_flops_per_device": model_flops / n, "model_flops_per_token": flops_per_token(config, length),
             "convention": "model: 6N + 12*L*H*Q*T per token (metrics.flops_per_token); hardware adds remat"}
    return flops, table, est


def _flags(setup, state, shape: _RunShape, act: dict, flag_min_bytes: int) -> list[dict]:
    """Logical-axis rules that leave a large tensor (or the saved residual stream) replicated."""
    part, config = setup.partitioner, setup.model_config
    logical = train_state.state_logical_specs(config, setup.tx).params
    flags = _replication_flags(state.params, logical, part.mesh, flag_min_bytes)
    if (shape.tensor > 1 and shape.embed_sharded == 1 and act["layers"] >= flag_min_bytes
            and config.remat_policy != "none"):
        flags.append({"tensor": "saved layer inputs (activation_batch, activation_length, activation_embed)",
                      "replicated_over": list(part.mesh_axes("activation_heads")), "per_device_bytes": act["layers"],
                      "message": f"the residual stream kept for backward ({act['layers'] / GiB:.1f} GiB per device) is "
                                 f"replicated over {list(part.mesh_axes('activation_heads'))}: no rule maps "
                                 "activation_embed or activation_length to a mesh axis (sequence "
                                 "parallelism over 'tensor' would split it; the model does not support it yet)"})
    return flags


def _notes(state, device: DeviceSpec, summary, on_tpu: bool) -> list[str]:
    notes = [TPU_NOTE if on_tpu else CPU_NOTE]
    if summary.unknown_trip_loops:
        notes.append(f"{summary.unknown_trip_loops} while loops without a known trip count were counted once")
    global_params = _tree_bytes(state.params, global_bytes)
    if global_params > device.hbm_bytes:
        notes.append(f"float32 parameters are {global_params / GiB:.1f} GiB in all: evaluation that replicates them "
                     "(evaluation.model.DecoderOnlyModel with a mesh, the multi-process eval callback) cannot fit one device")
    return notes


def _eval_sections(setup, state, batch, kernels, on_tpu: bool, eval_steps: bool, generation: dict | None) -> dict:
    """The eval step's and (optionally) generation's compiled memory and collectives."""
    evals = {}
    if eval_steps:
        with kernels():
            compiled_eval = _compile(setup.trainer.eval_step, state.params, batch, options={} if on_tpu else None)
        evals["eval_step"] = {"memory": _memory_stats(compiled_eval),
                              "collective_bytes": _collective_totals(compiled_eval, setup.partitioner.mesh.size)}
    if generation:
        with kernels():
            evals["generate"] = _plan_generation(setup, state.params, options={} if on_tpu else None, **generation)
    return evals


def _collective_totals(compiled, n: int) -> dict:
    out: dict[str, int] = {}
    for col in hlo_collectives.analyse_hlo(compiled.as_text(), n).collectives:
        out[col.kind] = out.get(col.kind, 0) + col.result_bytes * col.multiplier
    return out


def _plan_generation(setup, params, *, batch: int = 8, prompt_length: int = 256, max_new_tokens: int = 256,
                     options: dict | None = None) -> dict:
    """Compile `models.generate` (prefill + KV-cache decode loop) with the parameters sharded as in training."""
    from optiml_jax.models import generate

    part, config = setup.partitioner, setup.written_config
    rows = batch + (-batch) % part.data_shard_count
    prompt = jax.ShapeDtypeStruct((rows, prompt_length), jnp.int32, sharding=part.sharding(("activation_batch", None)))
    # The stop ids are traced values (the program depends only on how many): the config's, or one that never stops
    # for a config without ids (the plan reads no vocabulary).
    eos = config.eos_token_id if config.eos_token_id is not None else -1
    fn = jax.jit(lambda p, t: generate(config.replace(dropout_rate=0.0), p, t, max_new_tokens=max_new_tokens,
                                       eos_id=eos))
    with jax.set_mesh(part.mesh), nn.logical_axis_rules(part.rules):
        compiled = _compile(fn, params, prompt, options=options)
    return {"batch": rows, "prompt_length": prompt_length, "max_new_tokens": max_new_tokens,
            "memory": _memory_stats(compiled), "collective_bytes_prefill_and_one_decode_step":
                _collective_totals(compiled, part.mesh.size)}
