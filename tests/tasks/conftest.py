import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture
def mini_bench_assets():
    """(counts file, tokenizer dir) shipped as package data of optiml_jax.tasks.mini_bench."""
    import importlib.resources

    here = importlib.resources.files("optiml_jax.tasks.mini_bench")
    return pathlib.Path(str(here / "counts.json")), pathlib.Path(str(here / "bpe"))
