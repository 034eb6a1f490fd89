"""The registry: what resolves a task name. Every task is a `seqio.Task`; this module attaches instruction metadata
to task names and registers ours.

What the rest of the project reads about a task goes through `get_task(name)`, for any task in
`seqio.TaskRegistry`: one registered with `seqio.TaskRegistry.add` in a user's module exactly as seqio's README
does it, or one of ours. Training and evaluation batches come from that task's `get_dataset` (its data source and
all its preprocessors; `optiml_jax.data.task_cache`), never from a list kept beside it.

Instruction metadata (collection, category, generalization level, instruction type, full-sequence loss) is
attached per task name in one place, `register_task_metadata`. A task without metadata gets defaults: its own
category, collection "seqio", instance-level layout, loss on the `targets` feature only (`TaskView.has_metadata`
is False and the mixture report says so).

Our own tasks (`register_instruction_task`) are ordinary seqio.Tasks whose source yields raw examples (the dict of
docs/ARCHITECTURE.md, as every reader in `optiml_jax.sources` produces) and whose preprocessors do the
formatting (`optiml_jax.tasks.preprocessors.format_instruction`: delimiters, instruction layout), tokenization
and `</s>`, so `get_dataset` yields exactly what training packs: `inputs` (the prompt, weight 0) and `targets`
(" " + target + `</s>`, the labels), plus the raw text fields, which MetaICL demonstrations and task-level
placement use. `num_examples` ({split: count}, normally from a precomputed counts file) is what mixing rates use.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import pathlib
import threading
from typing import Callable, Iterable, Mapping

import seqio

from optiml_jax.tasks.formatting import check_example
from optiml_jax.tasks.metadata import GeneralizationSplit, TaskInfo

SplitFn = Callable[[], Iterable[dict]]
RAW_TEXT_FEATURES = ("instruction", "input", "target", "id")
DEFAULT_COLLECTION = "seqio"  # a task registered without instruction metadata


@dataclasses.dataclass
class RawTaskSource:
    """The raw-example readers of one of our tasks (what its seqio source reads) and their counts."""

    splits: dict[str, SplitFn]
    num_examples: dict[str, int]
    format_seed: int = 0
    # the preprocessors registered when they are only ours (formatting, tokenization, eos), else None: then
    # `optiml_jax.data.task_cache` may compute the same tokens in plain Python instead of running tf.data
    standard_preprocessors: tuple | None = None


@dataclasses.dataclass(frozen=True)
class TaskView:
    """What the data path, the CLI and evaluation read about any registered seqio task."""

    info: TaskInfo
    seqio_task: seqio.Task
    has_metadata: bool
    raw: RawTaskSource | None  # our tasks only: their raw readers

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def vocabulary(self) -> seqio.Vocabulary:
        return self.seqio_task.output_features["targets"].vocabulary

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.seqio_task.splits)

    @property
    def generation(self) -> tuple:
        """Changes whenever the name is registered again (token caches keyed on it never serve stale data)."""
        return (id(self.seqio_task), _GENERATION.get(self.name, 0))

    @property
    def has_inputs(self) -> bool:
        return "inputs" in self.seqio_task.output_features

    @property
    def standard_pipeline(self) -> bool:
        """One of our tasks whose seqio preprocessors are still only the ones `register_instruction_task` gave it
        (formatting, tokenization, `CacheDatasetPlaceholder`, eos): its tokens are a pure function of its raw
        examples, which `optiml_jax.data.task_cache` computes without tf.data (the same ids)."""
        ours = self.raw.standard_preprocessors if self.raw is not None else None
        mine = tuple(self.seqio_task.preprocessors)
        return ours is not None and len(ours) == len(mine) and all(a is b for a, b in zip(ours, mine))


_METADATA: dict[str, TaskInfo] = {}
_RAW: dict[str, RawTaskSource] = {}
_GENERATION: dict[str, int] = {}
_GENERALIZATION_SPLITS: dict[str, GeneralizationSplit] = {}
_RAW_CACHE: dict[tuple[str, str], tuple[dict, ...]] = {}
_COUNT_CACHE: dict[tuple, int] = {}
_LOCK = threading.Lock()


def register_task_metadata(name: str, info: TaskInfo | None = None, **fields) -> TaskInfo:
    """Attach instruction metadata to task `name` (a TaskInfo, or TaskInfo fields as keywords).

    Works for any seqio task, registered before or after this call, e.g. in a user's task module:
        seqio.TaskRegistry.add("my_task", ...)
        register_task_metadata("my_task", collection="flan", category="sentiment", instruction_type="instance")
    """
    if info is None:
        info = TaskInfo(name, **{"collection": DEFAULT_COLLECTION, "category": name, **fields})
    elif fields:
        raise ValueError("give either a TaskInfo or its fields, not both")
    if info.name != name:
        raise ValueError(f"metadata for {name!r} names another task ({info.name!r})")
    _METADATA[name] = info
    _bump(name)
    return info


def default_info(name: str) -> TaskInfo:
    """The metadata of a task registered without any: its own category, instance-level, loss on targets."""
    return TaskInfo(name, DEFAULT_COLLECTION, name, instruction_type="instance")


def register_instruction_task(info: TaskInfo, splits: Mapping[str, SplitFn], vocabulary: seqio.Vocabulary,
                              num_examples: Mapping[str, int] | None = None, *, replace: bool = False,
                              format_seed: int = 0, extra_preprocessors: Iterable[Callable] = ()) -> seqio.Task:
    """Registers one of our tasks as a `seqio.Task` over raw-example readers (one callable per split).

    Its preprocessors: `format_instruction(info, format_seed)`, `tokenize_in_batches` (seqio's `tokenize`, batched),
    `CacheDatasetPlaceholder`,
    `append_eos_after_trim`; `extra_preprocessors` run before the formatting (over the raw features). Its
    metric_fns: `info.metric` as a seqio predict metric (`optiml_jax.tasks.metric_fns`).
    """
    from optiml_jax.tasks.metric_fns import seqio_metric_fn
    from optiml_jax.tasks.preprocessors import format_instruction, tokenize_in_batches

    if not splits:
        raise ValueError(f"task {info.name!r}: no splits given")
    if info.name in seqio.TaskRegistry.names() and not replace:
        raise ValueError(f"task {info.name!r} is already registered (pass replace=True to override)")
    counts = dict(num_examples or {})
    unknown = set(counts) - set(splits)
    if unknown:
        raise ValueError(f"task {info.name!r}: counts given for splits {sorted(unknown)} that have no reader")
    extra = list(extra_preprocessors)
    preprocessors = [*extra, format_instruction(info, format_seed), tokenize_in_batches,
                     seqio.CacheDatasetPlaceholder(), seqio.preprocessors.append_eos_after_trim]
    _RAW[info.name] = RawTaskSource(dict(splits), counts, format_seed,
                                    None if extra else tuple(preprocessors))
    _METADATA[info.name] = info
    _bump(info.name)
    if info.name in seqio.TaskRegistry.names():
        seqio.TaskRegistry.remove(info.name)
    return seqio.TaskRegistry.add(
        info.name,
        source=seqio.FunctionDataSource(_raw_dataset_fn(info.name), splits=list(splits),
                                        num_input_examples=counts or None),
        preprocessors=preprocessors,
        output_features={"inputs": seqio.Feature(vocabulary, add_eos=False, required=False),
                         "targets": seqio.Feature(vocabulary, add_eos=True)},
        metric_fns=[seqio_metric_fn(info.metric)],
    )


def _bump(name: str) -> None:
    _GENERATION[name] = _GENERATION.get(name, 0) + 1
    for key in [k for k in _RAW_CACHE if k[0] == name]:
        del _RAW_CACHE[key]


def unregister_task(name: str) -> None:
    """Remove a task (ours or a user's) from `seqio.TaskRegistry` and drop its metadata, e.g. a notebook's or a
    test's scratch task: commands such as `tasks list` read every registered task."""
    if name not in seqio.TaskRegistry.names():
        raise KeyError(f"no task named {name!r} is registered")
    seqio.TaskRegistry.remove(name)
    _METADATA.pop(name, None)
    _RAW.pop(name, None)
    _bump(name)


def _raw_dataset_fn(name: str):
    """The FunctionDataSource of one of our tasks: its raw examples, read (and validated) once, as tf.data."""

    def dataset_fn(split: str, shuffle_files: bool = False, seed: int | None = None):
        import tensorflow as tf

        rows = load_raw_examples(name, split)
        columns = {k: [ex[k] for ex in rows] for k in RAW_TEXT_FEATURES}
        if not rows:
            return tf.data.Dataset.from_tensor_slices({k: tf.constant([], tf.string) for k in RAW_TEXT_FEATURES})
        return tf.data.Dataset.from_tensor_slices(columns)

    return dataset_fn


def known_names() -> list[str]:
    return sorted(set(seqio.TaskRegistry.names()) | set(seqio.MixtureRegistry.names()))


def unknown_name_error(name: str, what: str = "task or mixture") -> KeyError:
    """A KeyError naming the closest registered names (and the usual cause)."""
    close = difflib.get_close_matches(name, known_names(), n=5, cutoff=0.5)
    hint = f"; closest: {', '.join(close)}" if close else ""
    return KeyError(f"no {what} named {name!r} is registered{hint} (is the module that registers it imported? "
                    "--gin.MIXTURE_OR_TASK_MODULE=my_tasks or --module_import=my_tasks)")


def get_task(name: str) -> TaskView:
    """The view of any registered seqio task: its metadata (or defaults), vocabulary, splits and readers."""
    if name not in seqio.TaskRegistry.names():
        raise unknown_name_error(name, "task")
    task = seqio.TaskRegistry.get(name)
    if "targets" not in task.output_features:
        raise ValueError(f"task {name!r} has no 'targets' output feature (features: {sorted(task.output_features)}); "
                         "a decoder trains on 'targets' (and 'inputs' when present)")
    info = _METADATA.get(name)
    return TaskView(info or default_info(name), task, info is not None, _RAW.get(name))


def registered_tasks() -> list[TaskView]:
    """Every task in seqio.TaskRegistry (ours and everyone else's), by name."""
    out = []
    for name in sorted(seqio.TaskRegistry.names()):
        try:
            out.append(get_task(name))
        except ValueError:  # a task without 'targets' (e.g. a seqio test fixture) is not a decoder task
            continue
    return out


def load_raw_examples(name: str, split: str, *, memoize: bool = True) -> tuple[dict, ...]:
    """All raw examples of a split of one of *our* tasks (read once, then memoized), validated; ids filled in.
    `memoize=False` (the training stream's token read) keeps nothing: its tokens are what it holds."""
    key = (name, split)
    with _LOCK:
        if key in _RAW_CACHE:
            return _RAW_CACHE[key]
    if name not in _RAW:
        raise KeyError(f"task {name!r} has no raw-example readers (it was not registered with "
                       "register_instruction_task); read it through its seqio dataset instead")
    raw, info = _RAW[name], _METADATA[name]
    if split not in raw.splits:
        raise KeyError(f"task {name!r} has no split {split!r}; it has {sorted(raw.splits)}")
    out = []
    for i, ex in enumerate(raw.splits[split]()):
        if isinstance(ex, dict) and not ex.get("id"):
            ex = dict(ex, id=f"{name}-{split}-{i}")
        if not _passes_check_example(info, ex):  # the quick test first: building the message per example is slow
            check_example(info, ex, where=f" (split {split!r}, position {i})")
        out.append(ex)
    expected = raw.num_examples.get(split)
    if expected is not None and expected != len(out):
        raise ValueError(f"task {name!r} split {split!r}: the counts file says {expected} examples but the reader "
                         f"yielded {len(out)}; regenerate the counts file")
    if not memoize:
        return tuple(out)
    with _LOCK:
        _RAW_CACHE[key] = tuple(out)
    return _RAW_CACHE[key]


def _passes_check_example(info: TaskInfo, ex) -> bool:
    """True when `check_example` would accept `ex` (the same conditions, without building its error message)."""
    if not isinstance(ex, dict):
        return False
    instruction, text, target = ex.get("instruction"), ex.get("input"), ex.get("target")
    if not (isinstance(instruction, str) and isinstance(text, str) and isinstance(target, str)):
        return False
    return bool(target.strip()) and (info.full_sequence_loss or bool(text.strip() or instruction.strip()))


def num_examples(name: str, split: str = "train") -> int:
    """Example count of a split: our counts file, else seqio's `num_input_examples`, else counted (once)."""
    view = get_task(name)
    if view.raw is not None:
        if split in view.raw.num_examples:
            return view.raw.num_examples[split]
        return len(load_raw_examples(name, split))
    n = view.seqio_task.num_input_examples(split)
    if n is not None:
        return int(n)
    key = (name, view.generation, split)
    if key not in _COUNT_CACHE:
        ds = view.seqio_task.get_dataset(sequence_length=None, split=split, shuffle=False, num_epochs=1,
                                         trim_output_features=False)
        _COUNT_CACHE[key] = int(sum(1 for _ in ds.as_numpy_iterator()))
    return _COUNT_CACHE[key]


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
