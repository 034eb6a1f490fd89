"""The stream's read-ahead thread and the bounded set of resident task shards (issue 23): batches are bitwise the same
with read-ahead on and off, with tasks dropped from memory and read again, and across a resume; the resident count
stays within the bound that `optiml_jax.data.stream` states; and the read-ahead thread, not the step, does the reads."""

import collections
import gc
import threading

import numpy as np
import pytest

from optiml_jax.data import task_cache
from optiml_jax.data.read_ahead import READ_AHEAD
from optiml_jax.data.stream import TrainStream
from optiml_jax.tasks import mixtures, registry
from optiml_jax.testing import register_fake_instruction_task

N_TASKS, MIXTURE, LENGTH, BATCH = 120, "test_read_ahead_mixture", 128, 4


@pytest.fixture(scope="module")
def mixture():
    import seqio

    names = [register_fake_instruction_task(f"test_read_ahead_{i:03d}", n=24, splits=("train",))
             for i in range(N_TASKS)]
    mixtures.register_rate_mixture(MIXTURE, {n: 1.0 for n in names})
    yield names
    seqio.MixtureRegistry.remove(MIXTURE)
    for n in names:
        registry.unregister_task(n)


@pytest.fixture
def resident_budget(monkeypatch):
    """Sets the process's resident budget (bytes) for one test, from an empty memory."""
    def set_budget(n):
        gc.collect()  # earlier tests' streams release what they protect
        task_cache.forget_in_memory()
        monkeypatch.setattr(task_cache.RESIDENT, "budget", n)
    yield set_budget
    READ_AHEAD.wait_idle(60)
    task_cache.forget_in_memory()


def _assert_same(a, b, where):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=f"{k} at {where}")


def test_batches_are_the_same_with_read_ahead_and_eviction_and_across_a_resume(mixture, resident_budget):
    resident_budget(2**30)
    plain = TrainStream(MIXTURE, LENGTH, BATCH, seed=3)
    reference = [plain.get_batch(s) for s in range(12)]
    assert len(plain.tasks_read) > 40

    resident_budget(12_000)  # a few of these tasks' shards: they are dropped and read again
    evicted0, reads0 = task_cache.RESIDENT.evictions, collections.Counter(task_cache.PIPELINE_READS)
    ahead = TrainStream(MIXTURE, LENGTH, BATCH, seed=3, read_ahead_steps=2)
    for s in range(12):  # no waiting for the thread: it reads while the next step is packed
        _assert_same(ahead.get_batch(s), reference[s], f"step {s} with read-ahead")
    READ_AHEAD.wait_idle(60)
    assert task_cache.RESIDENT.evictions > evicted0
    assert max((task_cache.PIPELINE_READS - reads0).values()) > 1  # some task was read again after being dropped

    probe = TrainStream(MIXTURE, LENGTH, BATCH, seed=3, read_ahead_steps=2)
    for s in range(6):
        probe.get_batch(s)
    state = probe.state()
    READ_AHEAD.wait_idle(60)
    task_cache.forget_in_memory()  # a restarted process
    resumed = TrainStream(MIXTURE, LENGTH, BATCH, seed=3, read_ahead_steps=2)
    assert resumed.restore(state, 6)
    for s in range(6, 12):
        _assert_same(resumed.get_batch(s), reference[s], f"step {s} after the resume")


def test_resident_task_shards_stay_within_the_stated_bound(mixture, resident_budget, monkeypatch):
    """Resident bytes <= max(budget, P) at every insertion, P = the protected entries' bytes, and what a stream
    protects after a step is the distinct tasks of each group's carried draws and next max(R, 1) x D draws (D: the
    most new draws one group made in the step just packed), as `optiml_jax.data.stream` states."""
    budget, read_ahead = 12_000, 1
    resident_budget(budget)
    resident = task_cache.RESIDENT
    stream = TrainStream(MIXTURE, LENGTH, BATCH, seed=1, packing_group_rows=2, read_ahead_steps=read_ahead)
    seen = []
    put = resident.put

    def recording_put(key, value, merge=None):
        put(key, value, merge=merge)
        truth = sum(task_cache.entry_nbytes(v) for v in resident._entries.values())  # measured now, not cached
        seen.append((resident.nbytes, truth, resident.protected_nbytes(), len(resident)))

    monkeypatch.setattr(resident, "put", recording_put)
    widest = 0
    for step in range(14):
        before = stream._states_before(step)
        stream.get_batch(step)
        after = stream._states_before(step + 1)
        d = max(a.cursor - b.cursor for a, b in zip(after, before))
        draws = [(g, k) for g, st in zip(stream.groups, after) for k in st.carry]
        draws += [(g, st.cursor + i) for g, st in zip(stream.groups, after) for i in range(max(read_ahead, 1) * d)]
        window = {stream.task_names[stream._draw(g, k)[0]] for g, k in draws}
        assert resident._protected[stream._owner] == window, step
        widest = max(widest, len(window))
        READ_AHEAD.wait_idle(60)
    assert len(seen) > 40
    assert all(n <= max(budget, p) for n, _, p, _ in seen), seen
    # the sizes it evicts by are close to the entries' sizes (re-measured every REMEASURE_EVERY insertions)
    assert all(n == truth for n, truth, _, _ in seen), seen
    held = max(k for *_, k in seen)
    assert held <= widest + 1 and len(stream.tasks_read) > 2 * held  # memory follows the window, not tasks read
    owner = stream._owner
    del stream
    gc.collect()
    assert owner not in resident._protected  # a stream gone protects nothing


def test_the_read_ahead_thread_reads_the_next_steps_tasks(mixture, resident_budget, monkeypatch):
    resident_budget(2**30)
    readers = collections.Counter()
    read = task_cache._read_shards

    def counting_read(task_name, *args, **kwargs):
        readers["ahead" if threading.current_thread().name == "optiml-read-ahead" else "step"] += 1
        return read(task_name, *args, **kwargs)

    monkeypatch.setattr(task_cache, "_read_shards", counting_read)
    stream = TrainStream(MIXTURE, LENGTH, BATCH, seed=5, read_ahead_steps=3)
    stream.get_batch(0)
    at_step_0 = readers["step"]
    for s in range(1, 10):
        READ_AHEAD.wait_idle(60)  # the trainer's step: the thread has had time to read
        stream.get_batch(s)
    READ_AHEAD.wait_idle(60)
    assert at_step_0 > 0 and len(stream.tasks_read) > at_step_0 + 20
    # after step 0 the thread read what the steps drew: a step reads only what its window missed
    assert readers["step"] - at_step_0 <= 0.1 * readers["ahead"], readers
