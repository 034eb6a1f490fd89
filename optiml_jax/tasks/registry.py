"""Registering instruction tasks from any source of raw examples, as real SeqIO tasks.

`register_instruction_task(info, splits, vocabulary, num_examples)` takes one Python callable per split
returning an iterable of raw examples (the dict of docs/ARCHITECTURE.md): the mini-benchmark generator, a
JSONL file, or the NIv2/PromptSource/FLAN/CoT readers all plug in the same way. It records the task in this
module's catalog (what the numpy training stream reads) and registers a `seqio.Task` whose
`FunctionDataSource` yields the zero-shot formatted texts (`inputs` = source, `targets` = " " + target),
tokenized with the task's vocabulary, so `seqio.get_dataset` works on it too.

`num_examples` ({split: count}, normally from a precomputed counts file) is what mixing rates use; raw
examples are only read when a split is first needed (and then checked against the count).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import threading
from typing import Callable, Iterable, Mapping

import seqio

from optiml_jax.tasks.formatting import check_example, draw_delimiter, layout, source_text
from optiml_jax.tasks.metadata import GeneralizationSplit, TaskInfo

SplitFn = Callable[[], Iterable[dict]]


@dataclasses.dataclass
class RegisteredTask:
    info: TaskInfo
    splits: dict[str, SplitFn]
    vocabulary: seqio.Vocabulary
    num_examples: dict[str, int]
    # Bumped on every (re-)registration of the name, so token caches keyed on it never serve stale data.
    generation: int = 0


_CATALOG: dict[str, RegisteredTask] = {}
_GENERALIZATION_SPLITS: dict[str, GeneralizationSplit] = {}
_RAW_CACHE: dict[tuple[str, str], tuple[dict, ...]] = {}
_LOCK = threading.Lock()


def register_instruction_task(info: TaskInfo, splits: Mapping[str, SplitFn], vocabulary: seqio.Vocabulary,
                              num_examples: Mapping[str, int] | None = None, *, replace: bool = False,
                              format_seed: int = 0) -> seqio.Task:
    """Records `info` with its split callables and registers the matching `seqio.Task` (same name)."""
    if not splits:
        raise ValueError(f"task {info.name!r}: no splits given")
    if info.name in _CATALOG and not replace:
        raise ValueError(f"task {info.name!r} is already registered (pass replace=True to override)")
    counts = dict(num_examples or {})
    unknown = set(counts) - set(splits)
    if unknown:
        raise ValueError(f"task {info.name!r}: counts given for splits {sorted(unknown)} that have no reader")
    generation = _CATALOG[info.name].generation + 1 if info.name in _CATALOG else 0
    _CATALOG[info.name] = RegisteredTask(info, dict(splits), vocabulary, counts, generation)
    for key in [k for k in _RAW_CACHE if k[0] == info.name]:
        del _RAW_CACHE[key]
    if replace:
        seqio.TaskRegistry.remove(info.name)
    return seqio.TaskRegistry.add(
        info.name,
        source=seqio.FunctionDataSource(_dataset_fn(info.name, format_seed), splits=list(splits),
                                        num_input_examples=counts or None),
        preprocessors=[seqio.preprocessors.tokenize, seqio.preprocessors.append_eos_after_trim],
        output_features={"inputs": seqio.Feature(vocabulary, add_eos=False, required=False),
                         "targets": seqio.Feature(vocabulary, add_eos=True)},
    )


def unregister_task(name: str) -> None:
    """Remove a task from our catalog and from `seqio.TaskRegistry` (e.g. a notebook's or a test's scratch task:
    commands such as `tasks list` read every registered task). Mixtures naming it stop resolving."""
    if name not in _CATALOG:
        raise KeyError(f"no instruction task named {name!r} is registered")
    del _CATALOG[name]
    for key in [k for k in _RAW_CACHE if k[0] == name]:
        del _RAW_CACHE[key]
    seqio.TaskRegistry.remove(name)


def _dataset_fn(name: str, format_seed: int):
    def dataset_fn(split: str, shuffle_files: bool = False, seed: int | None = None):
        import tensorflow as tf

        task = get_task(name).info

        def gen():
            for ex in load_raw_examples(name, split):
                pieces = layout(task, ex, delimiter=draw_delimiter(name, ex["id"], format_seed))
                yield {"inputs": source_text(pieces), "targets": pieces[-1].text, "id": ex["id"]}

        spec = {k: tf.TensorSpec((), tf.string) for k in ("inputs", "targets", "id")}
        return tf.data.Dataset.from_generator(gen, output_signature=spec)
    return dataset_fn


def get_task(name: str) -> RegisteredTask:
    if name not in _CATALOG:
        hint = " (did you import optiml_jax.tasks.registrations?)" if not _CATALOG else ""
        raise KeyError(f"no instruction task named {name!r} is registered{hint}")
    return _CATALOG[name]


def registered_tasks() -> list[RegisteredTask]:
    return list(_CATALOG.values())


def load_raw_examples(name: str, split: str) -> tuple[dict, ...]:
    """All raw examples of a split (read once, then memoized), validated; ids are filled in when absent."""
    key = (name, split)
    with _LOCK:
        if key in _RAW_CACHE:
            return _RAW_CACHE[key]
    task = get_task(name)
    if split not in task.splits:
        raise KeyError(f"task {name!r} has no split {split!r}; it has {sorted(task.splits)}")
    out = []
    for i, ex in enumerate(task.splits[split]()):
        if isinstance(ex, dict) and not ex.get("id"):
            ex = dict(ex, id=f"{name}-{split}-{i}")
        check_example(task.info, ex, where=f" (split {split!r}, position {i})")
        out.append(ex)
    expected = task.num_examples.get(split)
    if expected is not None and expected != len(out):
        raise ValueError(f"task {name!r} split {split!r}: the counts file says {expected} examples but the reader "
                         f"yielded {len(out)}; regenerate the counts file")
    with _LOCK:
        _RAW_CACHE[key] = tuple(out)
    return _RAW_CACHE[key]


def num_examples(name: str, split: str = "train") -> int:
    """Example count of a split from the registered counts (falls back to reading the split)."""
    task = get_task(name)
    if split in task.num_examples:
        return task.num_examples[split]
    return len(load_raw_examples(name, split))


def jsonl_split(path: str | os.PathLike) -> SplitFn:
    """A split reader for a JSONL file of raw examples (one dict per line)."""
    path = pathlib.Path(path)

    def read():
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as e:
                        raise ValueError(f"{path}:{n}: not valid JSON ({e})") from e
    return read


def read_counts_file(path: str | os.PathLike) -> dict[str, dict[str, int]]:
    """{task: {split: count}} from a counts JSON file."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def register_generalization_split(split: GeneralizationSplit) -> None:
    """Makes a split known to the CLI (`list --generalization_split NAME`)."""
    _GENERALIZATION_SPLITS[split.name] = split


def generalization_splits() -> dict[str, GeneralizationSplit]:
    return dict(_GENERALIZATION_SPLITS)
