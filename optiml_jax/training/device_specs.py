"""Accelerator kinds the planner can size a run for: HBM, dense bf16 peak, memory and interconnect bandwidth.

Why a table: `optiml_jax.plan` compiles a pod's train step on fake CPU devices, so nothing on this host
knows how much memory a TPU v5p or an H100 has or how fast its links are. Every number below is a
datasheet figure with its source next to it; the planner states which ones it used in its report.

Interconnect model (what `collective_bandwidth` returns; see `planning.estimate_step_time`):
- TPU: one slice, all chips on ICI. A ring collective along one mesh axis of the torus uses the two
  links of that axis (one per direction), so it gets 2 x the one-way link bandwidth per chip.
  Multi-slice (DCN) is not modelled.
- GPU: `devices_per_node` GPUs share NVLink (a ring inside the node gets the one-way NVLink bandwidth
  per GPU); a collective whose group spans nodes runs at the per-GPU share of the node's network
  (InfiniBand / EFA), which is what NCCL rings achieve across nodes.
These are peak link rates; measured NCCL bus bandwidth is typically 75-90% of them.
"""

from __future__ import annotations

import dataclasses

GiB = 2**30


@dataclasses.dataclass(frozen=True)
class DeviceSpec:
    name: str
    hbm_bytes: int  # usable device memory as the runtime reports it
    peak_flops: float  # dense bf16 FLOP/s per device (no 2:4 sparsity)
    hbm_bytes_per_s: float
    intra_node_bytes_per_s: float  # per device, one ring along a mesh axis (TPU ICI / GPU NVLink)
    inter_node_bytes_per_s: float  # per device, a ring whose group spans nodes (GPU network); TPU: = ICI
    devices_per_node: int | None  # NVLink domain size; None = no boundary (one TPU slice)
    matmul_efficiency: float = 0.8  # fraction of peak a large bf16 matmul sustains (compute-time model)
    platform: str = "gpu"
    source: str = ""

    def collective_bandwidth(self, spans_nodes: bool) -> float:
        return self.inter_node_bytes_per_s if spans_nodes else self.intra_node_bytes_per_s

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_TPU_NOTE = ("ICI per-axis ring = 2 x one-way link bandwidth (jax-ml 'How to Scale Your Model', TPU chapter: "
             "v4/v5e 4.5e10 B/s, v5p/v6e 9e10 B/s one-way per link)")

DEVICES: dict[str, DeviceSpec] = {
    # cloud.google.com/tpu/docs/v4: 275 TFLOP/s bf16, 32 GiB HBM2, 1200 GB/s.
    "tpu_v4": DeviceSpec("tpu_v4", 32 * GiB, 275e12, 1.2e12, 9e10, 9e10, None, platform="tpu",
                         source="cloud.google.com/tpu/docs/v4; " + _TPU_NOTE),
    # cloud.google.com/tpu/docs/v5e: 197 TFLOP/s bf16, 16 GiB HBM2, 819 GB/s.
    "tpu_v5e": DeviceSpec("tpu_v5e", 16 * GiB, 197e12, 8.19e11, 9e10, 9e10, None, platform="tpu",
                          source="cloud.google.com/tpu/docs/v5e; " + _TPU_NOTE),
    # cloud.google.com/tpu/docs/v5p: 459 TFLOP/s bf16, 95 GiB HBM2e, 2765 GB/s, 1200 GB/s bidirectional ICI/chip.
    "tpu_v5p": DeviceSpec("tpu_v5p", 95 * GiB, 459e12, 2.765e12, 1.8e11, 1.8e11, None, platform="tpu",
                          source="cloud.google.com/tpu/docs/v5p; " + _TPU_NOTE),
    # cloud.google.com/tpu/docs/v6e: 918 TFLOP/s bf16, 32 GiB HBM, 1640 GB/s.
    "tpu_v6e": DeviceSpec("tpu_v6e", 32 * GiB, 918e12, 1.64e12, 1.8e11, 1.8e11, None, platform="tpu",
                          source="cloud.google.com/tpu/docs/v6e; " + _TPU_NOTE),
    # NVIDIA A100 datasheet: 312 TFLOP/s bf16 dense, 40 GB HBM2 1555 GB/s, NVLink3 600 GB/s bidirectional
    # (300 one-way). Network: 8 x 200 Gb/s HDR InfiniBand per 8 GPUs (DGX A100) = 25 GB/s per GPU; AWS p4d
    # (the OPT-IML paper's 40GB A100s ran on AWS) has 400 Gb/s EFA per node = 6.25 GB/s per GPU.
    "a100": DeviceSpec("a100", 40 * GiB, 312e12, 1.555e12, 3.0e11, 2.5e10, 8,
                       source="NVIDIA A100 datasheet (SXM4 40GB); DGX A100 8x HDR 200 Gb/s"),
    "a100_80gb": DeviceSpec("a100_80gb", 80 * GiB, 312e12, 2.039e12, 3.0e11, 2.5e10, 8,
                            source="NVIDIA A100 datasheet (SXM4 80GB); DGX A100 8x HDR 200 Gb/s"),
    # NVIDIA H100 SXM5 datasheet: 989 TFLOP/s bf16 dense (1979 is with sparsity), 80 GB HBM3 (81559 MiB
    # usable) 3.35 TB/s, NVLink4 900 GB/s bidirectional (450 one-way). DGX H100: 8 x 400 Gb/s NDR = 50 GB/s/GPU.
    "h100": DeviceSpec("h100", 81559 * 2**20, 989e12, 3.35e12, 4.5e11, 5.0e10, 8,
                       source="NVIDIA H100 SXM5 datasheet; DGX H100 8x NDR 400 Gb/s"),
    # NVIDIA H200 SXM: H100 compute, 141 GB HBM3e (143771 MiB usable) 4.8 TB/s, same NVLink4 and network.
    "h200": DeviceSpec("h200", 143771 * 2**20, 989e12, 4.8e12, 4.5e11, 5.0e10, 8,
                       source="NVIDIA H200 SXM datasheet; DGX H200 8x NDR 400 Gb/s"),
}

# jax `device_kind` strings (lower case) -> table entry, for the device check on real hardware.
_KIND_ALIASES = (("h200", "h200"), ("h100", "h100"), ("a100-sxm4-80gb", "a100_80gb"), ("a100 80gb", "a100_80gb"),
                 ("a100", "a100"), ("tpu v4", "tpu_v4"), ("tpu v5 lite", "tpu_v5e"), ("tpu v5e", "tpu_v5e"),
                 ("tpu v5p", "tpu_v5p"), ("tpu v5", "tpu_v5p"), ("tpu v6", "tpu_v6e"))


def get_device_spec(name: str) -> DeviceSpec:
    key = name.lower().replace("-", "_")
    if key not in DEVICES:
        raise ValueError(f"unknown device kind {name!r}; known: {sorted(DEVICES)}")
    return DEVICES[key]


def spec_for_device_kind(device_kind: str) -> DeviceSpec | None:
    """The table entry for a jax `Device.device_kind` (e.g. 'NVIDIA H100 80GB HBM3', 'TPU v5 lite'), or None."""
    kind = device_kind.lower()
    for needle, name in _KIND_ALIASES:
        if needle in kind:
            return DEVICES[name]
    return None
