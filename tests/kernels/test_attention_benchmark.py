"""perf/attention.py --smoke runs on CPU and its block-visit numbers show real skipping."""

import importlib.util
import pathlib

import pytest

BENCH = pathlib.Path(__file__).resolve().parents[2] / "perf" / "attention.py"


@pytest.mark.slow
def test_benchmark_smoke_mode(tmp_path):
    spec = importlib.util.spec_from_file_location("attention_benchmark", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    results = bench.main(["--smoke", "--json", str(tmp_path / "out.json")])
    visits = {row["segments"]: row for row in results["visits"]}
    assert visits[1]["work_fraction"] == 1.0
    assert visits[8]["visited_blocks"] == visits[8]["plan_blocks"] < visits[1]["visited_blocks"]
    assert visits[8]["work_fraction"] <= 0.35
    rows = {row["method"]: row for row in results["throughput"]}
    for name in ("pallas_ours_1seg", "pallas_ours_8seg", "jax_pallas_gpu_mha_8seg", "xla_dot_product_attention"):
        assert rows[name].get("fwd_tflops", 0) > 0 and rows[name].get("fwd_bwd_tflops", 0) > 0, rows[name]
    assert (tmp_path / "out.json").exists()


def test_benchmark_flop_convention_and_packing():
    spec = importlib.util.spec_from_file_location("attention_benchmark_fast", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.causal_flops(1, 1, 4, 2) == 4 * 16 * 2 / 2
    seg = bench.packed_segments(2, 10, 4)
    assert seg.shape == (2, 10) and sorted(set(seg[0].tolist())) == [1, 2, 3, 4]
    assert (seg[0, 1:] >= seg[0, :-1]).all()
