"""The planner's cost model of one training step: FLOPs per token (split into matmul and attention), HBM
traffic, the compiled program's collectives grouped with ring-model wire bytes and time, and the step-time / MFU
estimate that combines them (`estimate_step_time` states the overlap model). Pure arithmetic over what
`planning.plan_train` measured: no compilation here."""

from __future__ import annotations

import dataclasses

from optiml_jax.models import OPTConfig
from optiml_jax.training import hlo_collectives
from optiml_jax.training.device_specs import DeviceSpec
from optiml_jax.training.metrics import flops_per_token


def layer_params(config: OPTConfig) -> int:
    """Parameters of one decoder layer (attention with biases, the MLP, two layer norms)."""
    h, f = config.hidden_size, config.ffn_dim
    return 4 * (h * h + h) + (h * f + f) + (f * h + h) + 4 * h


@dataclasses.dataclass
class CollectiveRow:
    kind: str
    category: str  # "parameter all-gather" | "gradient reduction" | "activation"
    group_size: int
    spans_nodes: bool
    count: int  # instructions
    executions: int  # instructions x loop trips
    compiled_bytes: int  # result bytes per device per step, as XLA:CPU compiled them
    device_bytes: int  # the same at the run's compute dtype (bf16 runs: large f32 payloads at 2 bytes/element)
    wire_bytes: int  # what one device sends per step under the ring model
    seconds: float


def _ring_wire(kind: str, payload: int, n: int, as_reduce_scatter: bool) -> float:
    if n <= 1:
        return 0.0
    if kind == "all-reduce" and not as_reduce_scatter:
        return 2.0 * payload * (n - 1) / n
    if kind == "collective-permute":
        return float(payload)
    return payload * (n - 1) / n  # all-gather (output), reduce-scatter (input), all-to-all


def collective_table(summary: hlo_collectives.HloSummary, *, device: DeviceSpec, mesh, param_keys: set,
                     compute_dtype: str) -> list[CollectiveRow]:
    """Group the compiled collectives by (kind, category, group size, node span) with bytes and ring time."""
    rows: dict[tuple, CollectiveRow] = {}
    per_node = device.devices_per_node
    for col in summary.collectives:
        n = col.group_size
        spans = bool(per_node) and any(len({d // per_node for d in g}) > 1 for g in col.groups)
        bw = device.collective_bandwidth(spans)
        for arr in col.arrays:
            elements = arr.elements * (n if col.kind == "reduce-scatter" else 1)
            is_param = (elements, 1 if col.kind == "collective-permute" else n) in param_keys and arr.dtype.startswith(
                ("f", "bf"))
            if col.kind in ("all-gather", "collective-permute") and is_param:
                category = "parameter all-gather"
            elif col.kind in ("all-reduce", "reduce-scatter") and is_param:
                category = "gradient reduction"
            else:
                category = "activation"
            payload = arr.bytes * (n if col.kind == "reduce-scatter" else 1)
            itemsize = hlo_collectives.DTYPE_BYTES.get(arr.dtype, 4)
            device_payload = payload
            if compute_dtype == "bfloat16" and arr.dtype == "f32" and arr.elements >= 2**16:
                device_payload = payload // itemsize * 2
            wire = _ring_wire(col.kind, device_payload, n, category == "gradient reduction") * col.multiplier
            key = (col.kind, category, n, spans)
            row = rows.get(key) or CollectiveRow(col.kind, category, n, spans, 0, 0, 0, 0, 0, 0.0)
            row.count += 1
            row.executions += col.multiplier
            row.compiled_bytes += payload * col.multiplier
            row.device_bytes += device_payload * col.multiplier
            row.wire_bytes += int(wire)
            row.seconds += wire / bw
            rows[key] = row
    return sorted(rows.values(), key=lambda r: -r.seconds)


def flop_split_per_token(config: OPTConfig, length: int) -> dict[str, float]:
    """Hardware FLOPs per token, split into dense matmuls and the attention core.

    Model FLOPs are 6N + 12*L*H*Q*T (`metrics.flops_per_token`: 6N matmul, 12LHQT attention). Remat adds what
    it recomputes: 'full' the layers' forward (2*N_layers matmul + 4*L*H*Q*T attention); the dots policies
    the attention core (a Pallas kernel is not a dot_general, so it is not saved).
    """
    attention_fwd = 4 * config.num_layers * config.num_heads * config.head_dim * length
    model = flops_per_token(config, length)
    attention = 3 * attention_fwd
    matmul = model - attention
    if config.remat_policy == "full":
        matmul += 2 * config.num_layers * layer_params(config)
        attention += attention_fwd
    elif config.remat_policy != "none":
        attention += attention_fwd
    return {"matmul": float(matmul), "attention": float(attention), "model": float(model)}


def hbm_bytes_per_step(config: OPTConfig, tokens_per_device: float, params_per_device: float, tensor: int) -> float:
    """HBM traffic of the memory-bound (non-matmul) work per device per step, a rough model.

    Per token per layer the forward's elementwise ops (2 layer norms, 2 dropouts, 2 residual adds, bias adds,
    relu) read and write ~ (15*h + 4*ffn/t) * c bytes; the backward ~2x that; 'full' remat repeats the
    forward. Cross-entropy passes over the f32 logits ~4 times (write, max/sum, gradient). Adam reads
    params, grads, mu, nu and writes three of them: 28 bytes per local float32 parameter.
    """
    c = 2 if config.dtype == "bfloat16" else 4
    fwd = (15 * config.hidden_size + 4 * config.ffn_dim // tensor) * c
    passes = 3 + (1 if config.remat_policy != "none" else 0)
    per_token = config.num_layers * fwd * passes + 4 * 4 * config.vocab_size // tensor
    return float(per_token * tokens_per_device + 28 * params_per_device)


def estimate_step_time(device: DeviceSpec, flops_per_device: dict, hbm_bytes: float, table: list[CollectiveRow],
                       matmul_efficiency: float | None = None, attention_efficiency: float = 0.4) -> dict:
    """The step-time model, stated:

    compute = matmul FLOPs / (peak x matmul efficiency) + attention FLOPs / (peak x attention efficiency)
              + memory-bound bytes / HBM bandwidth          (`flop_split_per_token`, `hbm_bytes_per_step`);
    each collective: ring algorithm, wire bytes / link bandwidth (intra-node or inter-node, `device_specs`);
    parameter all-gathers and gradient reductions (FSDP) overlap with compute (XLA prefetches / schedules
    them asynchronously), activation collectives (tensor-parallel all-reduces, all-to-alls) are exposed:
        step = compute + activation comm + max(0, parameter comm - compute).
    Also returned: the perfect-overlap bound max(compute, all comm) and the no-overlap bound compute + all comm.
    Defaults: matmul efficiency from the device table (0.8: a bf16 8192^3 matmul ran at ~790 of 989 TFLOP/s
    on an H200), attention 0.4 (flash kernels at T=2048 reach 35-50% of peak; performance_anchors).
    Ignored: kernel launch gaps, host input pipeline, stragglers, HBM traffic of the matmuls themselves.
    """
    eff = device.matmul_efficiency if matmul_efficiency is None else matmul_efficiency
    matmul_s = flops_per_device["matmul"] / (device.peak_flops * eff)
    attention_s = flops_per_device["attention"] / (device.peak_flops * attention_efficiency)
    memory_s = hbm_bytes / device.hbm_bytes_per_s
    compute = matmul_s + attention_s + memory_s
    param = sum(r.seconds for r in table if r.category != "activation")
    act = sum(r.seconds for r in table if r.category == "activation")
    step = compute + act + max(0.0, param - compute)
    return {"compute_s": compute, "matmul_s": matmul_s, "attention_s": attention_s, "memory_bound_s": memory_s,
            "parameter_comm_s": param, "activation_comm_s": act, "step_s": step,
            "step_s_perfect_overlap": max(compute, param + act), "step_s_no_overlap": compute + param + act,
            "matmul_efficiency": eff, "attention_efficiency": attention_efficiency}
