"""The human-readable report of a `planning.Plan` (what `python -m optiml_jax.plan` prints; the JSON is
`Plan.to_dict()`)."""

from __future__ import annotations

from optiml_jax.training.planning import GiB, Plan


def format_plan(plan: Plan) -> str:
    """The human-readable report the CLI prints."""
    def g(b: float) -> str:
        for unit, size in (("GiB", GiB), ("MiB", 2**20), ("KiB", 2**10)):
            if abs(b) >= size:
                return f"{b / size:8.2f} {unit}"
        return f"{b:8.0f} B  "

    m, f, e, r = plan.memory, plan.fits, plan.estimate, plan.run
    lines = [f"Plan: {r['num_params'] / 1e9:.2f}B params, batch {r['batch_size']} x {r['length']}, mesh "
             f"{plan.mesh['shape']} ({plan.mesh['devices']} x {plan.device['name']}), remat {r['remat_policy']}, "
             f"attention {r['attention_backend'].split('[')[0]}, {r['rows_per_device']} rows/device",
             "", "Per-device memory          from sharding specs + analytic    compiled ("
                 + ("TPU compiler" if r.get("compiled_for") == "tpu" else "XLA:CPU") + " memory_analysis)"]
    spec, an, co = m["spec"], m["analytic"], m["compiled"]
    lines += [f"  parameters (f32)         {g(spec['params'])}",
              f"  optimizer state          {g(spec['opt_state'])}",
              f"  gradients (f32)          {g(spec['grads'] + spec['grad_accumulator'])}",
              f"  batch                    {g(spec['batch'])}            arguments {g(co['argument'])}",
              f"  saved activations        {g(an['layers'] + an['embeddings'])}",
              f"  remat working set        {g(an['recompute_working_set'])}",
              f"  logits + gradient        {g(an['logits'])}",
              f"  weights in flight/update {g(an['gathered_weights_and_update_workspace'])}            temp      "
              f"{g(co['temp'])}",
              f"  total                    {g(an['total'])}            total     {g(co['total'])}",
              f"  HBM {g(f['hbm_bytes'])}, usable with {f['headroom']:.0%} headroom {g(f['usable_bytes'])}: "
              f"{'FITS' if f['fits'] else 'DOES NOT FIT'} by {f['basis']} (analytic {f['analytic_fraction_of_hbm']:.0%} "
              f"of HBM, compiled {f['compiled_fraction_of_hbm']:.0%})",
              "  largest compiled arrays: " + ", ".join(f"{a['array']} x{a['count']}" for a in
                                                         m["largest_compiled_arrays"][:5]),
              "", f"FLOPs per step: model {plan.flops['model_flops_per_step']:.3e}, hardware (with remat) "
                  f"{plan.flops['hardware_flops_per_step']:.3e}", "",
              "Collectives per device per step (ring model; device bytes at the compute dtype)"]
    for c in plan.collectives:
        lines.append(f"  {c['kind']:<18} {c['category']:<21} group {c['group_size']:>4} "
                     f"{'inter-node' if c['spans_nodes'] else 'intra-node/ICI'} x{c['executions']:<5} compiled "
                     f"{g(c['compiled_bytes'])} device {g(c['device_bytes'])} -> {c['seconds'] * 1e3:9.1f} ms")
    lines += ["", f"Estimated step: {e['step_s']:.3f} s (compute {e['compute_s']:.3f} s = matmuls "
                  f"{e['matmul_s']:.3f} at {e['matmul_efficiency']:.0%} of peak + attention {e['attention_s']:.3f} at "
                  f"{e['attention_efficiency']:.0%} + memory-bound {e['memory_bound_s']:.3f}; activation comm "
                  f"{e['activation_comm_s']:.3f} s exposed, "
                  f"parameter comm {e['parameter_comm_s']:.3f} s overlapped); bounds {e['step_s_perfect_overlap']:.3f}"
                  f"-{e['step_s_no_overlap']:.3f} s",
              f"  {e['tokens_per_s']:,.0f} tokens/s ({e['tokens_per_s_per_device']:,.0f} per device), MFU "
              f"{e['mfu']:.1%} (bounds {e['mfu_no_overlap']:.1%}-{e['mfu_perfect_overlap']:.1%})"]
    for name, ev in plan.eval_steps.items():
        lines.append(f"{name}: compiled total {g(ev['memory']['total'])} per device")
    if plan.flags:
        lines += ["", "Flags:"] + [f"  ! {fl['message']}" for fl in plan.flags[:12]]
        if len(plan.flags) > 12:
            lines.append(f"  ... {len(plan.flags) - 12} more (see the JSON)")
    lines += ["", "Notes:"] + [f"  - {note}" for note in plan.notes]
    lines.append(f"  - planner peak RSS {plan.planner['peak_rss_bytes'] / GiB:.2f} GiB")
    return "\n".join(lines)
