"""optiml_jax: OPT-IML instruction meta-learning in JAX.

Layers, top to bottom (imports point down; the contract is `.importlinter` at the repository root):
cli -> testing -> evaluation -> training -> data | checkpoints -> tasks | models -> sources | kernels -> vocabularies.
Data flows the other way: tasks -> data -> models -> training -> evaluation.
`optiml_jax.models` and `optiml_jax.kernels` import without TensorFlow, SeqIO or gin.
"""

import pathlib

__version__ = "0.1.0"


def gin_dir() -> pathlib.Path | None:
    """The gin/ folder: shipped inside the package by a wheel install, else the source checkout's top-level one."""
    here = pathlib.Path(__file__).resolve().parent
    for candidate in (here / "gin", here.parent / "gin"):
        if candidate.is_dir():
            return candidate
    return None
