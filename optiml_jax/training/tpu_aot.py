"""Compile for a real TPU slice on a CPU host (ahead-of-time, through libtpu's compile-only client).

Why: XLA:CPU computes bf16 matmuls in f32 and has no reduce-scatter (planning.CPU_NOTE), so a plan
compiled for fake CPU devices over-states activation memory and collective bytes. With the `libtpu`
package importable, `jax.experimental.topologies.get_topology_desc("v5p:4x4x4", "tpu")` gives abstract
TPU devices of that slice; a jit lowered with shardings over them compiles with the TPU compiler itself
(MaxText's train_compile does the same), so `memory_analysis()` and the HLO are what the pod would run.
No TPU is needed. libtpu is ~700 MB: install it where only the planner sees it, e.g.
    pip install --target /opt/libtpu --no-deps libtpu   # then PYTHONPATH=/opt/libtpu python -m optiml_jax.plan ...

Kernels: our Pallas attention and JAX's splash pick their flavour from `jax.default_backend()` (CPU here:
interpret mode). `mosaic_kernels()` makes them see 'tpu' while lowering, so the compiled plan contains the
Mosaic kernels a TPU would run, not the interpreter.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
from unittest import mock

# device_specs name -> (topology prefix, torus dimensions); TPU v4 topologies enumerate TensorCores, not
# chips, so it stays on the fake-CPU path.
TOPOLOGIES = {"tpu_v5p": ("v5p", 3), "tpu_v5e": ("v5e", 2), "tpu_v6e": ("v6e", 2)}


def available() -> bool:
    return importlib.util.find_spec("libtpu") is not None


def supports(device_kind: str) -> bool:
    return device_kind in TOPOLOGIES


def topology_name(device_kind: str, num_devices: int) -> str:
    """'v5p:4x4x8' for 128 v5p chips: powers of two, as cubic as possible (the shapes Cloud TPU offers)."""
    prefix, dims = TOPOLOGIES[device_kind]
    if num_devices & (num_devices - 1):
        raise ValueError(f"{num_devices} {device_kind} chips: TPU slices come in powers of two")
    shape = [1] * dims
    for i in range(int(math.log2(num_devices))):
        shape[(dims - 1 - i) % dims] *= 2  # grow the last dimension first: 2x2x4 then 2x4x4 then 4x4x4
    return f"{prefix}:{'x'.join(map(str, sorted(shape)))}"


def topology_devices(device_kind: str, num_devices: int) -> list:
    from jax.experimental import topologies

    devices = list(topologies.get_topology_desc(topology_name=topology_name(device_kind, num_devices),
                                                platform="tpu").devices)
    if len(devices) != num_devices:
        raise ValueError(f"topology {topology_name(device_kind, num_devices)} has {len(devices)} devices, "
                         f"expected {num_devices}")
    return devices


@contextlib.contextmanager
def mosaic_kernels():
    """While lowering for TPU devices from a CPU host: kernels choose their compiled TPU (Mosaic) flavour."""
    import jax  # not at module level: the CLI decides on the target before jax may be imported

    with mock.patch.object(jax, "default_backend", lambda: "tpu"):
        yield
