"""A fake instruction task in a few lines, and a context manager that removes it again: commands such as
`tasks list` read every registered task, so a test's scratch task must not outlive the test."""

from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

from optiml_jax.tasks import registry
from optiml_jax.tasks.metadata import TaskInfo


def fake_instruction_examples(n: int, tag: str = "fake", *, instruction: str = "Repeat the word.") -> list[dict]:
    """`n` raw examples (the dict every reader yields) whose input and target carry `tag` and the index."""
    return [{"instruction": instruction, "input": f"word {tag}{i}", "target": f"{tag}{i}", "id": f"{tag}-{i}",
             "references": [f"{tag}{i}"], "options": []} for i in range(n)]


def register_fake_instruction_task(name: str, examples: Sequence[dict] | None = None, *, n: int = 8,
                                   splits: Sequence[str] = ("train", "validation"), collection: str = "niv2",
                                   category: str = "fake_category", instruction_type: str = "task",
                                   vocabulary=None) -> str:
    """Registers task `name` (replacing one of that name) with `examples` (default: `n` fake ones) in every split;
    the vocabulary defaults to the mini-benchmark's shipped BPE. Returns the name."""
    if vocabulary is None:
        from optiml_jax.vocabularies import OPTVocabulary
        from optiml_jax.tasks.mini_bench.tokenizer import TOKENIZER_DIR

        vocabulary = OPTVocabulary(TOKENIZER_DIR)
    rows = list(examples) if examples is not None else fake_instruction_examples(n, tag=name.replace("_", ""))
    info = TaskInfo(name, collection, category, instruction_type=instruction_type)
    registry.register_instruction_task(info, {s: (lambda rows=rows: rows) for s in splits}, vocabulary,
                                       {s: len(rows) for s in splits}, replace=True)
    return name


@contextlib.contextmanager
def scratch_task(name: str) -> Iterator[str]:
    """`with scratch_task(register_fake_instruction_task("t")) as name:` ... the task is unregistered afterwards."""
    try:
        yield name
    finally:
        with contextlib.suppress(KeyError):
            registry.unregister_task(name)


@contextlib.contextmanager
def tasks_registered_inside() -> Iterator[None]:
    """Every task and mixture registered inside the block is unregistered when it ends (a test's broken NIv2 task,
    an OPT-IML Bench registered over a scratch directory). The library's own tasks are imported first, so they
    count as registered before; so does anything a module registered at import before the block (a module
    imported inside it stays imported, so its tasks would not come back on the next import: don't import task
    modules inside the block)."""
    import seqio

    import optiml_jax.tasks.registrations  # noqa: F401

    tasks, mixtures = set(seqio.TaskRegistry.names()), set(seqio.MixtureRegistry.names())
    try:
        yield
    finally:
        for name in set(seqio.MixtureRegistry.names()) - mixtures:
            seqio.MixtureRegistry.remove(name)
        for name in set(seqio.TaskRegistry.names()) - tasks:
            with contextlib.suppress(KeyError):
                registry.unregister_task(name)
