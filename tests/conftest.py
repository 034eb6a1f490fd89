"""Test-wide setup: 8 fake CPU devices (real multi-device sharding on one machine), CPU only."""

import os
import pathlib

os.environ.setdefault("JAX_PLATFORMS", "cpu")
_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
    os.environ["XLA_FLAGS"] = (_flags + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _share_compilations_within_the_run() -> None:
    """One XLA compilation cache for the whole run (this process, the xdist workers and every subprocess a test
    starts inherit it through the environment): the suite compiles the same tiny programs in dozens of tests, and
    with the cache each is compiled once (measured in a checkout: 251 s instead of 287-309 s, user CPU -19%). A
    new empty directory per run, removed at exit by the process that made it, so no run reads another's entries;
    a JAX_COMPILATION_CACHE_DIR the user set is used as it is and kept."""
    if "JAX_COMPILATION_CACHE_DIR" in os.environ:
        return
    import atexit
    import shutil
    import tempfile

    directory = tempfile.mkdtemp(prefix="optiml_jax_test_xla_cache_")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = directory
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
    atexit.register(shutil.rmtree, directory, ignore_errors=True)


_share_compilations_within_the_run()

import pytest  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture
def shared_data() -> pathlib.Path:
    """Path to ../shared/data, or skip the test with a message when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference data folder {SHARED_DATA} is absent")
    return SHARED_DATA


SLOW_TESTS_FILE = pathlib.Path(__file__).with_name("slow_tests.txt")


def _listed_slow_tests() -> set[str]:
    ids = set()
    for line in SLOW_TESTS_FILE.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            ids.add(line)
    return ids


@pytest.hookimpl(tryfirst=True)  # before `-m "not slow"` deselects
def pytest_collection_modifyitems(config, items):
    """Mark the tests `slow_tests.txt` lists (measured, one node id per line) as slow; a listed id that no longer
    exists is an error, so the list cannot rot silently."""
    listed = _listed_slow_tests()
    seen = set()
    for item in items:
        if item.nodeid in listed:
            item.add_marker(pytest.mark.slow)
            seen.add(item.nodeid)
    collected_everything = not config.args or config.args == [str(REPO_ROOT / "tests")] or config.args == ["tests"]
    missing = listed - seen
    if missing and collected_everything and not config.option.keyword:
        raise pytest.UsageError(f"{SLOW_TESTS_FILE.name} names tests that do not exist: {sorted(missing)[:5]}")
