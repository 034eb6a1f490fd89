import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture
def mini_bench_assets():
    """(counts file, tokenizer dir) shipped as package data of optiml_jax.tasks.mini_bench."""
    import importlib.resources

    here = importlib.resources.files("optiml_jax.tasks.mini_bench")
    return pathlib.Path(str(here / "counts.json")), pathlib.Path(str(here / "bpe"))


@pytest.fixture(autouse=True)
def _unregister_scratch_tasks():
    """Tasks a test registers (often deliberately broken ones) are removed after it: commands such as
    `tasks list` read every registered task, so a leftover would fail unrelated later tests."""
    from optiml_jax.testing.instruction_tasks import tasks_registered_inside

    with tasks_registered_inside():
        yield
