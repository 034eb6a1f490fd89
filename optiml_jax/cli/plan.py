"""Plan a training run before launching it: `python -m optiml_jax.plan` with train's gin files and bindings.

    python -m optiml_jax.plan --gin_file=runs/finetune.gin --gin_file=models/opt_30b.gin \
        --gin_file=partitioning/fsdp_tensor.gin --gin.MESH_SHAPE="(1, 32, 2)" --gin.REMAT_POLICY="'full'" \
        --gin.SCAN_LAYERS=True --gin.ATTENTION_BACKEND="'pallas'" --num_devices=64 --device_kind=a100

It builds the run's mesh over `--num_devices` fake CPU devices, builds the trainer exactly as `train()`
does (`train_loop.build_trainer`, fed with the configs gin binds to `train()`: `gin.get_bindings('train')`
over train's own defaults), lowers and compiles the sharded train step (and eval / generation steps)
on abstract shapes only, and prints per-device memory (sharding specs + analytic vs XLA's
memory_analysis), the fit verdict for `--device_kind`, FLOPs, collectives and an estimated step time and
MFU (`optiml_jax.training.planning`). Nothing is allocated: a 175B plan runs on a laptop-sized host.

MODEL_DIR, MIXTURE_OR_TASK_NAME and INITIAL_CHECKPOINT_PATH are not needed to plan; left %gin.REQUIRED
they get placeholders. Must start in a fresh process (the device count is fixed at jax import).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys

NOT_NEEDED_TO_PLAN = {"MODEL_DIR": "'/tmp/optiml_plan_unused'", "MIXTURE_OR_TASK_NAME": "'unused_by_plan'",
                      "INITIAL_CHECKPOINT_PATH": "None"}


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(prog="python -m optiml_jax.plan", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    from optiml_jax.cli import errors, gin_setup

    errors.with_exit_codes(p)
    gin_setup.add_gin_arguments(p)  # the same files, bindings and flags as train
    p.add_argument("--num_devices", type=int, required=True, help="devices of the pod (fake CPU devices here)")
    p.add_argument("--device_kind", default="h100", help="device table entry (training/device_specs.py): "
                                                         "tpu_v4, tpu_v5e, tpu_v5p, tpu_v6e, a100, a100_80gb, h100, h200")
    p.add_argument("--headroom", type=float, default=0.1, help="fraction of HBM kept free (default 0.1)")
    p.add_argument("--matmul_efficiency", type=float, default=None, help="fraction of peak dense matmuls reach "
                                                                          "(default: the device table's, 0.8)")
    p.add_argument("--attention_efficiency", type=float, default=0.4, help="fraction of peak the attention core reaches")
    p.add_argument("--flag_min_mib", type=float, default=64.0, help="flag replicated tensors above this (MiB)")
    p.add_argument("--no_eval", action="store_true", help="compile the train step only")
    p.add_argument("--generate", action="store_true", help="also compile generation (prefill + decode loop)")
    p.add_argument("--generate_batch", type=int, default=8)
    p.add_argument("--generate_prompt_length", type=int, default=256)
    p.add_argument("--generate_new_tokens", type=int, default=256)
    p.add_argument("--compile_for", choices=("auto", "cpu", "tpu"), default="auto",
                   help="tpu: compile with the TPU compiler for an abstract slice (needs the libtpu package; "
                        "tpu_v5e/v5p/v6e); auto: tpu when possible, else fake CPU devices")
    p.add_argument("--json", default=None, help="write the plan as JSON here")
    p.add_argument("--hlo_out", default=None, help="write the compiled train step's HLO text here")
    return gin_setup.parse_command_line(p, argv)


def _fake_devices(n: int) -> None:
    """N fake CPU devices, set before jax is imported; an already-imported jax must have exactly N."""
    if n == 0:  # TPU target: the mesh is built over abstract TPU devices, CPU stays the (one) host device
        os.environ["JAX_PLATFORMS"] = "cpu"
        os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")  # no GCE metadata server to ask
        os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")  # compile-only: no /tmp/libtpu_lockfile needed
        return
    if "jax" in sys.modules:
        import jax

        if jax.device_count() != n:
            raise SystemExit(f"error: jax is already initialised with {jax.device_count()} devices, not {n}: run "
                             "`python -m optiml_jax.plan` in a fresh process")
        return
    os.environ["JAX_PLATFORMS"] = "cpu"
    flags = " ".join(f for f in os.environ.get("XLA_FLAGS", "").split()
                     if not f.startswith("--xla_force_host_platform_device_count"))
    os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={n}".strip()


def _target(args) -> str:
    from optiml_jax.training import tpu_aot  # imports jax lazily only

    if args.compile_for == "cpu":
        return "cpu"
    ok = tpu_aot.supports(args.device_kind) and tpu_aot.available()
    if args.compile_for == "tpu" and not ok:
        raise SystemExit(f"error: --compile_for=tpu needs the libtpu package and a device kind in "
                         f"{sorted(tpu_aot.TOPOLOGIES)} (got {args.device_kind!r})")
    return "tpu" if ok else "cpu"


def configure(gin_files, bindings, search_paths) -> dict:
    """Parse like train does, fill the plan-irrelevant REQUIRED macros, and return train()'s arguments."""
    import gin

    from optiml_jax.cli import gin_setup as gin_config
    from optiml_jax.training import train_loop

    try:
        gin_config.parse_gin(gin_files, bindings, search_paths)
    except gin_config.GinConfigError:
        missing = gin_config.unset_required()
        if not missing or set(missing) - set(NOT_NEEDED_TO_PLAN):
            raise
        placeholders = [f"{name} = {NOT_NEEDED_TO_PLAN[name]}" for name in missing]
        gin_config.parse_gin(gin_files, bindings + placeholders, search_paths)
    bound = gin.get_bindings("train")
    params = inspect.signature(train_loop.train).parameters
    return {name: bound.get(name, p.default) for name, p in params.items()}


def build(train_kwargs: dict, partitioner=None):
    """`train_loop.build_trainer` on the configs gin binds to train() (`partitioner` overrides the bound one)."""
    from optiml_jax.training import train_loop

    execution = train_kwargs["execution"]
    return train_loop.build_trainer(model_config=train_kwargs["model_config"],
                                    partitioner=partitioner or execution.partitioner,
                                    optimizer=train_kwargs["optimizer"], seed=execution.seed)


def main(argv: list[str] | None = None) -> int:
    from optiml_jax.cli import gin_setup as gin_config

    try:
        args, bindings = parse_args(sys.argv[1:] if argv is None else argv)
    except gin_config.GinConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    target = _target(args)
    _fake_devices(0 if target == "tpu" else args.num_devices)
    from optiml_jax.training import plan_report, planning
    from optiml_jax.training.device_specs import get_device_spec

    try:
        device = get_device_spec(args.device_kind)
        gin_config.apply_data_flags(args)
        kwargs = configure(args.gin_file, bindings, gin_config.search_paths_of(args))
    except (gin_config.GinConfigError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    partitioner = None
    if target == "tpu":
        import functools

        from optiml_jax.training import tpu_aot

        devices = tpu_aot.topology_devices(device.name, args.num_devices)
        partitioner = functools.partial(kwargs["execution"].partitioner, devices=devices)
    setup = build(kwargs, partitioner)
    data = kwargs["data"]
    generation = None
    if args.generate:
        generation = dict(batch=args.generate_batch, prompt_length=args.generate_prompt_length,
                          max_new_tokens=args.generate_new_tokens)
    plan = planning.plan_train(setup, batch_size=data.batch_size, length=data.length, device=device,
                               headroom=args.headroom, matmul_efficiency=args.matmul_efficiency,
                               attention_efficiency=args.attention_efficiency,
                               flag_min_bytes=int(args.flag_min_mib * 2**20), eval_steps=not args.no_eval,
                               generation=generation, target=target)
    print(plan_report.format_plan(plan))
    if args.hlo_out:
        with open(args.hlo_out, "w") as f:
            f.write(plan.compiled_train_step.as_text())
    if args.json:
        out = plan.to_dict()
        out["command"] = " ".join(["python -m optiml_jax.plan", *(argv if argv is not None else sys.argv[1:])])
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2, default=str)
    return 0


def console_main() -> None:
    """Console-script entry (setup.py)."""
    sys.exit(main())


if __name__ == "__main__":
    sys.exit(main())
