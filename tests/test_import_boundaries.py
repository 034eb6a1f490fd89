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


def test_gpu_side_modules_import_without_tf_seqio_gin():
    """One fresh interpreter imports the modules in turn and, after each, lists the forbidden packages that import
    brought in: a module imported earlier that pulled nothing in cannot hide one a later module pulls in, so each
    offender is named as if it had been imported alone (one interpreter start instead of one per module)."""
    code = (
        "import importlib, json, sys\n"
        "pulled = {}\n"
        f"for module in {GPU_SIDE_MODULES!r}:\n"
        "    before = set(sys.modules)\n"
        "    importlib.import_module(module)\n"
        f"    pulled[module] = sorted(m for m in {FORBIDDEN!r} if m in sys.modules and m not in before)\n"
        "print(json.dumps(pulled))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={"JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    pulled = __import__("json").loads(out.stdout.strip().splitlines()[-1])
    assert list(pulled) == GPU_SIDE_MODULES
    offenders = {m: bad for m, bad in pulled.items() if bad}
    assert not offenders, f"modules that pulled in TensorFlow/SeqIO/gin: {offenders}"


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
