"""Re-registering a task with new data must not serve the old task's cached tokens."""

from optiml_jax.data.task_cache import task_tokens
from optiml_jax.tasks import registry
from optiml_jax.tasks.metadata import TaskInfo


def _examples(word):
    return [{"instruction": "", "input": f"say {word} {i}", "target": word, "references": [word], "options": [],
             "id": str(i)} for i in range(3)]


def test_reregistered_task_gets_fresh_tokens():
    import optiml_jax.tasks.registrations  # noqa: F401  (mini-benchmark vocabulary)

    vocab = optiml_jax.tasks.mini_bench.registration.VOCABULARY
    info = TaskInfo(name="rereg_probe_task", collection="flan", category="probe")
    registry.register_instruction_task(info, {"train": lambda: _examples("alpha")}, vocab, replace=True)
    first = task_tokens("rereg_probe_task", "train")
    registry.register_instruction_task(info, {"train": lambda: _examples("omega")}, vocab, replace=True)
    second = task_tokens("rereg_probe_task", "train")
    ids_first, _ = first.example(0)
    ids_second, _ = second.example(0)
    assert vocab.decode(list(ids_first)).count("alpha") >= 1
    assert "omega" in vocab.decode(list(ids_second)) and "alpha" not in vocab.decode(list(ids_second))
