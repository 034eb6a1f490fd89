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
    import optiml_jax.tasks.registrations  # noqa: F401  (the library's own tasks are not a test's scratch tasks)
    from optiml_jax.tasks import registry

    before = {t.info.name for t in registry.registered_tasks()}
    yield
    for name in {t.info.name for t in registry.registered_tasks()} - before:
        registry.unregister_task(name)
