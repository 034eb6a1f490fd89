"""The accelerator hosts have no TensorFlow, SeqIO or gin: the model, kernels and converter must not import them."""

import subprocess
import sys

import pytest

GPU_SIDE_MODULES = [
    "optiml_jax.models",
    "optiml_jax.models.generation",
    "optiml_jax.kernels",
    "optiml_jax.kernels.flash_attention",
    "optiml_jax.kernels.peer_backends",
    "optiml_jax.checkpoints",
    "optiml_jax.checkpoints.resolve",
]
FORBIDDEN = ("tensorflow", "seqio", "gin", "tensorflow_datasets")


@pytest.mark.parametrize("module", GPU_SIDE_MODULES)
def test_module_imports_without_tf_seqio_gin(module):
    code = (
        "import importlib, sys\n"
        f"importlib.import_module({module!r})\n"
        f"bad = sorted(m for m in {FORBIDDEN!r} if m in sys.modules)\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={"JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "", f"{module} pulled in: {out.stdout.strip()}"
