"""`optiml_jax.plan` / `training.planning`: the plan of a step agrees with the real step, on 8 fake devices.

Fast tests share one tiny plan (module fixture: one abstract compile, one real init + compile). The heavy
ones (OPT-30B on 64 and OPT-175B on 128 fake devices, in subprocesses) are marked slow.
"""

import dataclasses
import json
import pathlib
import resource
import subprocess
import sys

import jax
import numpy as np
import pytest

from optiml_jax.training.run_config import OptimizerConfig

from optiml_jax.training import hlo_collectives, plan_report, planning, train_loop, train_state
from optiml_jax.training.device_specs import DEVICES, get_device_spec, spec_for_device_kind
from optiml_jax.training.model_config import opt_config
from optiml_jax.training.partitioning import Partitioner, make_mesh, standard_rules
from optiml_jax.training.synthetic_data import SyntheticStream

REPO = pathlib.Path(__file__).resolve().parents[2]
BATCH, LENGTH = 8, 32
MEMORY_TOLERANCE = 0.01  # plan vs real compile: relative, per memory_analysis field


def _setup(mesh_shape=(1, 4, 2), rules="fsdp_tensor", **config_overrides):
    config = opt_config("tiny", vocab_size=512, dtype="bfloat16", dropout_rate=0.0, **config_overrides)
    part = Partitioner(make_mesh(mesh_shape, jax.devices()[: int(np.prod(mesh_shape))]), standard_rules(rules))
    return train_loop.build_trainer(model_config=config, partitioner=part, seed=0,
        optimizer=OptimizerConfig(train_steps=10, learning_rate=1e-3, warmup_steps=1))


@pytest.fixture(scope="module")
def tiny():
    """(setup, plan, real state, real compiled step) for a tiny bf16 model on a 4 x 2 fsdp x tensor mesh."""
    setup = _setup(num_layers=1)  # one layer: the smallest program that still has every collective
    plan = planning.plan_train(setup, batch_size=BATCH, length=LENGTH, device=get_device_spec("h100"),
                               eval_steps=False, flag_min_bytes=1024)
    state = train_state.init_state(setup.model_config, setup.tx, setup.partitioner, seed=0)
    batch = setup.trainer.global_batch(SyntheticStream(BATCH, LENGTH, vocab_size=512).get_batch(0), BATCH)
    real = setup.trainer.train_step.lower(state, batch).compile()  # default compiler options, real arrays
    return setup, plan, state, real


def _device_bytes(tree) -> int:
    """Bytes the first device actually holds of a tree of real sharded arrays."""
    first = jax.devices()[0]
    return sum(s.data.nbytes for x in jax.tree.leaves(tree) for s in x.addressable_shards if s.device == first)


def test_spec_bytes_equal_the_real_sharded_arrays(tiny):
    _, plan, state, _ = tiny
    spec = plan.memory["spec"]
    assert spec["params"] == _device_bytes(state.params)  # exact: the same shardings
    assert spec["opt_state"] == _device_bytes(state.opt_state)
    assert spec["grads"] == spec["params"]


def test_plan_memory_analysis_agrees_with_the_real_compiled_step(tiny):
    _, plan, _, real = tiny
    ma = real.memory_analysis()
    for field in ("argument", "output", "alias", "temp"):
        planned, actual = plan.memory["compiled"][field], getattr(ma, f"{field}_size_in_bytes")
        assert abs(planned - actual) <= MEMORY_TOLERANCE * max(actual, 1), (field, planned, actual)
    # The compiled program's inputs are exactly the state + batch the specs describe.
    assert abs(plan.memory["compiled_vs_spec"]["argument_minus_state_and_batch"]) <= 64


def test_fit_verdicts(tiny):
    _, plan, _, _ = tiny
    assert plan.fits["fits"] and plan.fits["fits_compiled_upper_bound"]
    tiny_hbm = dataclasses.replace(get_device_spec("h100"), hbm_bytes=plan.memory["analytic"]["total"] // 2)
    verdict = planning.fit_report(plan.memory["analytic"]["total"], plan.memory["compiled"]["total"], tiny_hbm, 0.1)
    assert not verdict["fits"] and not verdict["fits_compiled_upper_bound"]
    text = plan_report.format_plan(dataclasses.replace(plan, fits=verdict))
    assert "DOES NOT FIT" in text


def test_collectives_flops_and_estimate(tiny):
    _, plan, _, _ = tiny
    kinds = {(c["kind"], c["category"], c["group_size"]) for c in plan.collectives}
    assert ("all-gather", "parameter all-gather", 4) in kinds  # FSDP over the 4-way fsdp axis
    assert any(k == "all-reduce" and g == 2 and cat == "activation" for k, cat, g in kinds)  # tensor parallel
    assert all(c["device_bytes"] <= c["compiled_bytes"] for c in plan.collectives)
    tokens = BATCH * LENGTH
    assert plan.flops["model_flops_per_step"] == pytest.approx(plan.flops["model_flops_per_token"] * tokens)
    est = plan.estimate
    assert est["step_s_perfect_overlap"] <= est["step_s"] <= est["step_s_no_overlap"]
    assert 0 < est["mfu"] <= 1


def test_replicated_parameter_is_flagged(tiny):
    _, plan, _, _ = tiny
    flagged = {f["tensor"]: f for f in plan.flags}
    positions = [f for name, f in flagged.items() if "embed_positions" in name]
    assert positions and positions[0]["replicated_over"] == ["tensor"]  # ('abs_pos', None), ('embed', 'fsdp')
    assert positions[0]["unmapped_logical_axes"] == ["abs_pos"]
    assert not any("fc1" in name and "kernel" in name for name in flagged)  # (embed, mlp) -> (fsdp, tensor)


def test_data_parallel_rules_flag_everything_large():
    setup = _setup(mesh_shape=(8, 1, 1), rules="data_parallel")
    params = train_state.abstract_state(setup.model_config, setup.tx, setup.partitioner).params
    logical = train_state.state_logical_specs(setup.model_config, setup.tx).params
    flags = planning._replication_flags(params, logical, setup.partitioner.mesh, min_bytes=64 * 1024)
    assert any("embed_tokens" in f["tensor"] and f["replicated_over"] == ["data"] for f in flags)


HLO = """HloModule m

%body (p: (s32[], f32[8,16])) -> (s32[], f32[8,16]) {
  %p = (s32[], f32[8,16]{1,0}) parameter(0)
  %x = f32[8,16]{1,0} get-tuple-element(%p), index=1
  %ag = f32[32,16]{1,0} all-gather(%x), channel_id=1, replica_groups=[2,4]<=[8], dimensions={0}, use_global_device_ids=true
  %ar = (f32[8,16]{1,0}, bf16[4]{0}) all-reduce(%x, %y), channel_id=2, replica_groups=mesh['axis_0'=4,'axis_1'=2] {'axis_1'}, to_apply=%add
  ROOT %t = (s32[], f32[8,16]{1,0}) tuple(%i, %x)
}

ENTRY %main (a: f32[8,16]) -> f32[8,16] {
  %a = f32[8,16]{1,0} parameter(0)
  %w = (s32[], f32[8,16]{1,0}) while(%init), condition=%cond, body=%body, backend_config={"known_trip_count":{"n":"12"}}
  %rs = f32[2,16]{1,0} reduce-scatter(%a), replica_groups={{0,1,2,3},{4,5,6,7}}, dimensions={0}
  ROOT %cp = f32[8,16]{1,0} collective-permute(%a), source_target_pairs={{0,1},{1,0}}
}
"""


def test_hlo_parser_groups_bytes_and_trip_counts():
    summary = hlo_collectives.analyse_hlo(HLO, 8)
    by_kind = {c.kind: c for c in summary.collectives}
    ag, ar, rs = by_kind["all-gather"], by_kind["all-reduce"], by_kind["reduce-scatter"]
    assert ag.groups == [[0, 1, 2, 3], [4, 5, 6, 7]] and ag.multiplier == 12 and ag.result_bytes == 32 * 16 * 4
    assert ar.groups == [[0, 1], [2, 3], [4, 5], [6, 7]] and ar.multiplier == 12
    assert ar.result_bytes == 8 * 16 * 4 + 4 * 2
    assert rs.group_size == 4 and rs.multiplier == 1
    assert by_kind["collective-permute"].groups == [[0, 1], [1, 0]]
    assert hlo_collectives.parse_replica_groups("replica_groups=[2,4]<=[4,2]T(1,0)", 8) == [[0, 2, 4, 6],
                                                                                         [1, 3, 5, 7]]


def test_device_table():
    assert {"tpu_v4", "tpu_v5e", "tpu_v5p", "tpu_v6e", "a100", "h100", "h200"} <= set(DEVICES)
    assert all(d.source and d.hbm_bytes > 0 and d.peak_flops > 1e14 for d in DEVICES.values())
    assert spec_for_device_kind("NVIDIA H100 80GB HBM3").name == "h100"
    assert spec_for_device_kind("TPU v5 lite").name == "tpu_v5e" and spec_for_device_kind("cpu") is None
    with pytest.raises(ValueError, match="unknown device kind"):
        get_device_spec("tpu_v9")


def test_cli_reads_train_bindings_from_gin(tmp_path):
    """The CLI on the quick synthetic run file: train()'s bound arguments drive the plan (in-process: 8 devices)."""
    from optiml_jax.cli import plan as plan_cli

    out = tmp_path / "plan.json"
    rc = plan_cli.main(["--gin_file=runs/smoke_synthetic.gin", "--gin_file=partitioning/fsdp.gin",
                        "--gin.BATCH_SIZE=8", "--gin.TASK_FEATURE_LENGTHS={'targets': 32}", "--num_devices=8",
                        "--device_kind=tpu_v5e", "--no_eval", f"--json={out}"])
    assert rc == 0
    report = json.loads(out.read_text())
    assert report["run"]["batch_size"] == 8 and report["run"]["length"] == 32
    assert report["mesh"]["shape"] == {"data": 1, "fsdp": 8, "tensor": 1}  # fsdp.gin's MESH_SHAPE (1, -1, 1)
    assert report["run"]["num_params"] == opt_config("tiny", vocab_size=512).num_params()  # opt_tiny_synthetic.gin
    assert report["device"]["name"] == "tpu_v5e" and report["fits"]["fits"]


def _run_cli(args, tmp_path, timeout):
    out = tmp_path / "plan.json"
    proc = subprocess.run([sys.executable, "-m", "optiml_jax.plan", *args, f"--json={out}"], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout


@pytest.mark.slow
def test_175b_on_128_devices_plans_without_allocating(tmp_path):
    report, text = _run_cli(["--gin_file=runs/finetune.gin", "--gin_file=models/opt_175b.gin",
                             "--gin_file=partitioning/fsdp_tensor.gin", "--gin.MESH_SHAPE=(1, 16, 8)",
                             "--gin.BATCH_SIZE=128", "--gin.REMAT_POLICY=full", "--gin.SCAN_LAYERS=True",
                             "--gin.ATTENTION_BACKEND=pallas", "--num_devices=128", "--device_kind=h100", "--no_eval"],
                            tmp_path, timeout=900)
    peak_child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    assert report["planner"]["peak_rss_bytes"] < 4 * 2**30  # 175B float32 params alone would be 700 GB
    assert peak_child < 6 * 2**30
    n = report["run"]["num_params"]
    assert report["memory"]["spec"]["params"] == pytest.approx(4 * n / 128, rel=0.01)
    assert report["memory"]["spec"]["opt_state"] == pytest.approx(8 * n / 128, rel=0.01)
    assert "Estimated step" in text and report["estimate"]["mfu"] > 0


@pytest.mark.slow
def test_30b_paper_layout_on_64_a100s(tmp_path):
    report, _ = _run_cli(["--gin_file=runs/finetune.gin", "--gin_file=models/opt_30b.gin",
                          "--gin_file=partitioning/fsdp_tensor.gin", "--gin.REMAT_POLICY=full",
                          "--gin.SCAN_LAYERS=True", "--gin.ATTENTION_BACKEND=pallas", "--num_devices=64",
                          "--device_kind=a100", "--no_eval"], tmp_path, timeout=900)
    assert report["mesh"]["shape"] == {"data": 1, "fsdp": 32, "tensor": 2} and report["run"]["rows_per_device"] == 8
    assert report["fits"]["fits"]
    cats = {(c["category"], c["spans_nodes"]) for c in report["collectives"]}
    assert ("parameter all-gather", True) in cats and ("activation", False) in cats  # FSDP across nodes, TP inside


@pytest.mark.slow
def test_config_that_cannot_fit_is_reported(tmp_path):
    """OPT-1.3B replicated (data parallel) on 8 x TPU v5e: 16 bytes/param of state alone > 16 GiB."""
    report, text = _run_cli(["--gin_file=runs/finetune.gin", "--gin_file=models/opt_1_3b.gin",
                             "--gin.BATCH_SIZE=8", "--gin.SCAN_LAYERS=True", "--num_devices=8",
                             "--device_kind=tpu_v5e", "--no_eval"], tmp_path, timeout=900)
    assert not report["fits"]["fits"] and "DOES NOT FIT" in text
    assert any("embed_tokens" in f["tensor"] for f in report["flags"])


def test_tpu_topology_names():
    from optiml_jax.training import tpu_aot

    assert tpu_aot.topology_name("tpu_v5p", 64) == "v5p:4x4x4"
    assert tpu_aot.topology_name("tpu_v5p", 128) == "v5p:4x4x8"
    assert tpu_aot.topology_name("tpu_v5e", 8) == "v5e:2x4" and tpu_aot.topology_name("tpu_v6e", 256) == "v6e:16x16"
    assert not tpu_aot.supports("tpu_v4") and not tpu_aot.supports("h100")
    with pytest.raises(ValueError, match="powers of two"):
        tpu_aot.topology_name("tpu_v5p", 96)


@pytest.mark.slow
@pytest.mark.skipif(not __import__("importlib").util.find_spec("libtpu"), reason="libtpu is not installed")
def test_tiny_plan_compiles_for_a_tpu_slice(tmp_path):
    """With libtpu importable: the TPU compiler plans an 8-chip v5p slice with the Mosaic Pallas kernel."""
    report, _ = _run_cli(["--gin_file=runs/smoke_synthetic.gin", "--gin_file=partitioning/fsdp_tensor.gin",
                          "--gin.COMPUTE_DTYPE=bfloat16", "--gin.ATTENTION_BACKEND=pallas", "--num_devices=8",
                          "--device_kind=tpu_v5p", "--compile_for=tpu", "--no_eval"], tmp_path, timeout=900)
    assert report["run"]["compiled_for"] == "tpu" and report["fits"]["basis"].startswith("compiled")
    assert report["run"]["custom_calls"].get("tpu_custom_call", 0) > 0  # Mosaic kernels, not the interpreter


TPU_STYLE_LOOP = """HloModule m

%cond (p: (s32[], f32[4])) -> pred[] {
  %constant.5 = s32[]{:T(128)} constant(12)
  %p = (s32[]{:T(128)}, f32[4]{0}) parameter(0)
  %g = s32[]{:T(128)} get-tuple-element(%p), index=0
  ROOT %lt = pred[]{:T(512)} compare(%g, %constant.5), direction=LT
}

%body (p: (s32[], f32[4])) -> (s32[], f32[4]) {
  %p = (s32[]{:T(128)}, f32[4]{0}) parameter(0)
  %x = f32[4]{0:T(256)} get-tuple-element(%p), index=1
  %ag = f32[16]{0:T(256)} all-gather(%x), replica_groups=[2,4]<=[8], dimensions={0}
  ROOT %t = (s32[], f32[4]{0}) tuple(%i, %x)
}

ENTRY %main (a: f32[4]) -> f32[4] {
  %a = f32[4]{0} parameter(0)
  ROOT %w = (s32[], f32[4]{0}) while(%init), condition=%cond, body=%body
}
"""


def test_loop_bound_read_from_the_condition_when_not_annotated():
    """The TPU compiler prints scans without `known_trip_count`: the bound comes from `counter < constant`."""
    summary = hlo_collectives.analyse_hlo(TPU_STYLE_LOOP, 8)
    (ag,) = summary.collectives
    assert ag.multiplier == 12 and ag.trip_count_known and summary.unknown_trip_loops == 0
    assert ag.result_bytes == 16 * 4


def test_async_collective_payloads():
    """TPU HLO: `collective-permute-start` returns (operand, result, u32 context...), `all-gather-start`
    (operands, results): the payload is the data, not the context scalars."""
    hlo = """HloModule m

ENTRY %main (a: bf16[8,256]) -> bf16[8,256] {
  %a = bf16[8,256]{1,0:T(8,128)(2,1)} parameter(0)
  %cp = (bf16[8,256]{1,0:T(8,128)(2,1)}, bf16[8,256]{1,0:T(8,128)(2,1)}, u32[]{:S(2)}, u32[]{:S(2)}) collective-permute-start(%a), source_target_pairs={{0,1},{1,0}}
  %d = bf16[8,256]{1,0} collective-permute-done(%cp)
  %ag = (bf16[8,256]{1,0}, bf16[64,256]{1,0}) all-gather-start(%a), replica_groups=[1,8]<=[8], dimensions={0}
  ROOT %agd = bf16[64,256]{1,0} all-gather-done(%ag)
}
"""
    by_kind = {c.kind: c for c in hlo_collectives.analyse_hlo(hlo, 8).collectives}
    assert set(by_kind) == {"collective-permute", "all-gather"}  # the -done halves are not counted again
    assert by_kind["collective-permute"].result_bytes == 8 * 256 * 2
    assert by_kind["all-gather"].result_bytes == 64 * 256 * 2 and by_kind["all-gather"].group_size == 8
