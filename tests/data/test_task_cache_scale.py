"""A 200-task mixture starts from the shared token cache, resumes, and reads each task's cache file at most once
per process, and only the tasks its steps draw (issue 23); the `tasks cache` command writes that cache."""

import collections

import numpy as np
import pytest

from optiml_jax.data import task_cache
from optiml_jax.data.stream import TrainStream
from optiml_jax.data.tokenization import TaskTokens, save_tokens
from optiml_jax.tasks import mixtures, registry
from optiml_jax.testing import register_fake_instruction_task

N_TASKS, MIXTURE = 200, "test_scale_200_mixture"


@pytest.fixture(scope="module")
def scale_mixture(tmp_path_factory):
    import seqio

    names = [register_fake_instruction_task(f"test_scale_{i:03d}", n=4, splits=("train",)) for i in range(N_TASKS)]
    mixtures.register_rate_mixture(MIXTURE, {n: 1.0 for n in names})
    cache = tmp_path_factory.mktemp("token_cache")
    rng = np.random.default_rng(0)
    for i, name in enumerate(names):  # the cache as `tasks cache` leaves it (contents made here: reading 200
        lengths = rng.integers(5, 40, size=12)  # tasks through TensorFlow would take minutes)
        examples = [(np.full(n, 100 + i, np.int32), np.ones(n, np.float32)) for n in lengths]
        save_tokens(task_cache.cache_file(name, "train", cache_dir=str(cache)),
                    TaskTokens.from_examples(examples, np.arange(len(examples))))
    yield names, str(cache)
    seqio.MixtureRegistry.remove(MIXTURE)
    for n in names:
        registry.unregister_task(n)


def test_200_tasks_start_resume_and_read_each_cache_file_once(scale_mixture):
    names, cache = scale_mixture
    task_cache.forget_in_memory()
    disk0, pipe0 = collections.Counter(task_cache.DISK_READS), collections.Counter(task_cache.PIPELINE_READS)
    run = TrainStream(MIXTURE, 128, 4, seed=0, cache_dir=cache)
    first = run.get_batch(0)
    read_at_start = set(run.tasks_read)
    assert 0 < len(read_at_start) < N_TASKS / 2  # it starts after reading what step 0 draws, not the catalog
    batches = {s: run.get_batch(s) for s in range(1, 8)}
    state_at_4 = None
    probe = TrainStream(MIXTURE, 128, 4, seed=0, cache_dir=cache)
    for s in range(4):
        probe.get_batch(s)
    state_at_4 = probe.state()
    reads = task_cache.DISK_READS - disk0
    assert max(reads.values()) == 1 and set(reads) == set(run.tasks_read)  # once per process, only drawn tasks
    assert not (task_cache.PIPELINE_READS - pipe0)  # no task went through its pipeline
    # a restarted process: nothing in memory, the state from the checkpoint
    task_cache.forget_in_memory()
    disk1 = collections.Counter(task_cache.DISK_READS)
    resumed = TrainStream(MIXTURE, 128, 4, seed=0, cache_dir=cache)
    assert resumed.restore(state_at_4, 4)
    for s in range(4, 8):
        for k in batches[s]:
            np.testing.assert_array_equal(resumed.get_batch(s)[k], batches[s][k])
    reads = task_cache.DISK_READS - disk1
    assert max(reads.values()) == 1 and set(reads) == set(resumed.tasks_read)
    assert len(reads) < len(run.tasks_read)  # steps 4-7 only: fewer tasks than the run from step 0
    assert first["decoder_segment_ids"].max() > 1


def test_tasks_cache_command_writes_the_cache_the_stream_reads(small_mixture, tmp_path, capsys):
    from optiml_jax.cli.tasks import main

    assert main(["cache", small_mixture, "--cache_dir", str(tmp_path)]) == 0
    names = sorted(mixtures.resolve_rates(small_mixture))
    assert "4 written" in capsys.readouterr().out
    assert all(task_cache.cache_file(n, "train", cache_dir=str(tmp_path)).is_file() for n in names)
    task_cache.forget_in_memory()
    disk0, pipe0 = collections.Counter(task_cache.DISK_READS), collections.Counter(task_cache.PIPELINE_READS)
    TrainStream(small_mixture, 256, 2, seed=0, cache_dir=str(tmp_path), read_all_tasks_first=True).get_batch(0)
    assert task_cache.DISK_READS - disk0 == collections.Counter({n: 1 for n in names})
    assert not (task_cache.PIPELINE_READS - pipe0)
    assert main(["cache", small_mixture, "--cache_dir", str(tmp_path)]) == 0
    assert "0 written, 4 already cached" in capsys.readouterr().out


def test_200_tasks_without_a_cache_read_each_drawn_task_once_and_tokenize_only_drawn_examples(scale_mixture):
    from optiml_jax.data.lazy_task_shard import LazyTaskShard

    task_cache.forget_in_memory()
    pipe0 = collections.Counter(task_cache.PIPELINE_READS)
    run = TrainStream(MIXTURE, 128, 1, seed=0)  # one packing group: each shard is a task's 4 examples
    batches = [run.get_batch(s) for s in range(6)]
    reads = task_cache.PIPELINE_READS - pipe0
    assert set(reads) == set(run.tasks_read) and max(reads.values()) == 1  # each drawn task's source read once
    assert 0 < len(reads) < N_TASKS
    shards = list(run.resident_shards().values())
    assert all(isinstance(s, LazyTaskShard) for s in shards)
    tokenized, held = sum(len(s._done) for s in shards), sum(len(s) for s in shards)
    placed = sum(int(b["decoder_segment_ids"].max()) for b in batches)
    assert placed <= tokenized < held  # the drawn examples (placed or carried), not every example of each task
    # a restarted process resumes from the checkpointed state, reading only what the later steps draw
    probe = TrainStream(MIXTURE, 128, 1, seed=0)
    for s in range(3):
        probe.get_batch(s)
    state = probe.state()
    task_cache.forget_in_memory()
    resumed = TrainStream(MIXTURE, 128, 1, seed=0)
    assert resumed.restore(state, 3)
    for s in range(3, 6):
        for k in batches[s]:
            np.testing.assert_array_equal(resumed.get_batch(s)[k], batches[s][k])


def test_a_task_registered_again_finds_the_same_cache_file(tmp_path):
    """A restart or another host registers its tasks anew: the cache file's name must not depend on objects'
    addresses (it held the address of each task's `seqio.CacheDatasetPlaceholder`, so no other process found the
    files `tasks cache` wrote), and it still changes with what the registration says."""
    from optiml_jax.testing.instruction_tasks import scratch_task

    with scratch_task(register_fake_instruction_task("test_cache_name_probe", n=3, splits=("train",))) as name:
        first = task_cache.cache_file(name, "train", cache_dir=str(tmp_path))
        old = list(registry.get_task(name).seqio_task.preprocessors)  # kept alive: their addresses are not reused
        register_fake_instruction_task(name, n=3, splits=("train",))
        new = list(registry.get_task(name).seqio_task.preprocessors)
        assert {id(p) for p in old} != {id(p) for p in new}
        assert task_cache.cache_file(name, "train", cache_dir=str(tmp_path)) == first
        register_fake_instruction_task(name, n=3, splits=("train",), category="another_category")
        assert task_cache.cache_file(name, "train", cache_dir=str(tmp_path)) != first
