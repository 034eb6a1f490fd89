"""The compiled kernels lower through Pallas' Mosaic (TPU) and Triton (GPU) paths on this CPU machine.

Interpret mode (every other kernel test) checks semantics but never runs those lowerings, where block shapes,
tiling and unsupported operations are rejected; `lower_for_platform` runs them without the hardware.
"""

import jax.numpy as jnp
import pytest

from optiml_jax.kernels.pallas_attention import lower_for_platform

TARGETS = {"cuda": "__gpu$xla.gpu.triton", "tpu": "tpu_custom_call"}


@pytest.mark.parametrize("platform", ["cuda", "tpu"])
@pytest.mark.parametrize("head_dim", [64, 80, 128])
@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float32])
def test_forward_and_backward_kernels_lower(platform, head_dim, dtype):
    # 300: not a multiple of the block, so the padded path is what gets lowered.
    exported = lower_for_platform(platform, (2, 300, 3, head_dim), dtype, block_sizes=(128, 128))
    text = exported.mlir_module()
    assert exported.platforms == (platform,)
    assert text.count(TARGETS[platform]) >= 3  # forward + dq + dk/dv kernels
    forward_only = lower_for_platform(platform, (1, 256, 2, head_dim), dtype, with_grad=False)
    assert forward_only.mlir_module().count(TARGETS[platform]) >= 1


def test_bad_tpu_tiling_and_platform_are_named():
    with pytest.raises(ValueError, match="block_k=96 must be a multiple of 128"):
        lower_for_platform("tpu", (1, 512, 2, 64), block_sizes=(128, 96))
    with pytest.raises(ValueError, match="platform='metal'"):
        lower_for_platform("metal", (1, 128, 2, 64))
