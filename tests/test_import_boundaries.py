"""The accelerator hosts have no TensorFlow, SeqIO or gin: the model, kernels and converter must not import them."""

import subprocess
import sys

import pytest

GPU_SIDE_MODULES = [
    "optiml_jax.models",
    "optiml_jax.models.generation",
    "optiml_jax.kernels",
    "optiml_jax.kernels.pallas_attention",
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


def test_public_kernel_names_are_the_functions_and_import_pallas_only_when_asked():
    code = (
        "import sys\n"
        "import optiml_jax.kernels as k\n"
        "assert 'jax.experimental.pallas' not in sys.modules, 'importing the package imported Pallas'\n"
        "from optiml_jax.kernels import flash_attention, lower_for_platform, xla_attention, cached_attention\n"
        "import optiml_jax.kernels.pallas_attention as m\n"
        "assert flash_attention is m.flash_attention and callable(lower_for_platform) and callable(xla_attention)\n"
        "assert k.flash_attention is flash_attention  # stays the function after the submodule import\n"
        "print('jax.experimental.pallas' in sys.modules)\n"
    )
    repo = str(__import__("pathlib").Path(__file__).resolve().parents[1])  # this checkout, not an installed copy
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={"JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin", "PYTHONPATH": repo})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "True"
