import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture
def mini_bench_assets():
    """(counts file, tokenizer dir) shipped in tasks/."""
    return REPO / "tasks" / "mini_bench_counts.json", REPO / "tasks" / "assets" / "mini_bench_tokenizer"


@pytest.fixture(autouse=True)
def _unregister_scratch_tasks():
    """Tasks a test registers (often deliberately broken ones) are removed after it: commands such as
    `tasks list` read every registered task, so a leftover would fail unrelated later tests."""
    from optiml_jax.tasks import registry

    before = {t.info.name for t in registry.registered_tasks()}
    yield
    for name in {t.info.name for t in registry.registered_tasks()} - before:
        registry.unregister_task(name)
