"""Each task's split read once through SeqIO, tokenized, and kept as arrays the stream samples from.

`split_tokens(task, split)` materializes `seqio_task.get_dataset(split=..., shuffle=False, num_epochs=1,
use_cached=...)`: the task's source and every preprocessor it has (ours format instructions there; a user's may
rewrite anything), exactly as `seqio.get_dataset` or `seqio.cache_tasks_main` would run them. Example j's tokens
are `inputs ++ targets` (when the task has `inputs`), with loss weight 0 on `inputs` and 1 on `targets` (label-only
loss), or 1 everywhere for full-sequence-loss tasks. The raw text fields (`instruction`, `input`, `target`, `id`)
are kept when the dataset carries them (our tasks), for MetaICL demonstrations laid out as text.

The stream's data shards are positions of the capped subset (`shard_positions`). The split is read whole, once
per process, and sharded here rather than with `seqio.ShardInfo`: with file-sharded sources SeqIO's shards are
sets of files, so a shard's content would depend on the file layout and on the number of readers, while the
stream's global batch must be a pure function of (mixture, seed, step). With USE_CACHED_TASKS the read is of
seqio's TFRecord cache (`seqio.cache_tasks_main`), and with `cache_dir` the arrays are saved as `.npz`.

What the process keeps of its reads (`RESIDENT`) is bounded: `optiml_jax.data.resident_shards` states the bound.
"""

from __future__ import annotations

import collections
import functools
import pathlib
import re
import threading
import zlib

import numpy as np

from optiml_jax.data.lazy_task_shard import LazyTaskShard, encode_examples
from optiml_jax.data.read_ahead import READ_AHEAD
from optiml_jax.data.resident_shards import ResidentShards
from optiml_jax.data.tokenization import TaskDataError, TaskTokens, cache_path, load_tokens, save_tokens
from optiml_jax.tasks import registry



def entry_nbytes(value) -> int:
    """The size of a `RESIDENT` entry: a split, or a dict of shards."""
    return sum(v.nbytes for v in value.values()) if isinstance(value, dict) else value.nbytes


# every split and shard set this process read and still holds (least recently used first; bounded)
RESIDENT = ResidentShards(sizer=entry_nbytes)
READ_BATCH = 1024
# False: every task is read through tf.data, ours too (the tests that compare both paths set it)
PYTHON_READS_OF_STANDARD_TASKS = True
_LOCK = threading.Lock()
# how often this process read each task from the disk cache, and through its seqio pipeline (tests count them)
DISK_READS: collections.Counter = collections.Counter()
PIPELINE_READS: collections.Counter = collections.Counter()


def vocabulary_key(vocabulary) -> str:
    return str(getattr(vocabulary, "path", None) or repr(vocabulary))


def shard_positions(n: int, cap: int | None, shard_index: int, num_shards: int, task_name: str,
                    seed: int = 0) -> np.ndarray:
    """Split positions this shard uses: a seeded subset of size min(n, cap), then every num_shards-th.
    A subset smaller than the shard count is not sharded (every shard uses all of it)."""
    if cap is not None and n > cap:
        keep = np.sort(np.random.default_rng([seed, zlib.crc32(task_name.encode())]).permutation(n)[:cap])
    else:
        keep = np.arange(n)
    if len(keep) >= num_shards:
        keep = keep[shard_index::num_shards]
    return keep.astype(np.int64)


def _read_options():
    """tf.data options for reading a split once, in order: grappler's default rewrites (parallelizing maps, injected
    prefetches, autotuning) are off. They are tuned for an input pipeline feeding an accelerator for hours; here
    each task is read once, and on a small machine building the optimized graph and its threads costs more than it
    saves. The examples and their order are the same either way (perf/RESULTS.md: this and the numpy join in
    `_read_dataset` read the quickstart mixture in 0.87x the time, identical arrays)."""
    import tensorflow as tf

    options = tf.data.Options()
    options.deterministic = True
    options.experimental_optimization.apply_default_optimizations = False
    return options


def _read_dataset(view: registry.TaskView, split: str, use_cached: bool) -> TaskTokens:
    """Every example of `split` through the task's own pipeline, as TaskTokens (+ raw texts when present)."""
    task = view.seqio_task
    if split not in task.splits:
        raise TaskDataError(f"task {view.name!r} has no split {split!r}; it has {sorted(task.splits)}")
    if use_cached and not task.cache_dir:
        raise TaskDataError(f"task {view.name!r}: USE_CACHED_TASKS=True but no seqio cache of it was found (run "
                            "seqio's cache_tasks_main for it, pass --seqio_additional_cache_dirs, or set "
                            "USE_CACHED_TASKS=False)")
    if not use_cached and PYTHON_READS_OF_STANDARD_TASKS and view.standard_pipeline:
        return _read_in_python(view, split)
    ds = task.get_dataset(sequence_length=None, split=split, use_cached=use_cached, shuffle=False, num_epochs=1,
                          trim_output_features=False)
    has_raw = all(k in ds.element_spec for k in registry.RAW_TEXT_FEATURES)
    has_inputs = "inputs" in ds.element_spec
    keep = ["targets"] + (["inputs"] if has_inputs else []) + (list(registry.RAW_TEXT_FEATURES) if has_raw else [])
    ds = ds.map(lambda ex: {k: ex[k] for k in keep}).ragged_batch(READ_BATCH).with_options(_read_options())
    inputs, targets, raw = [], [], []
    for batch in ds.as_numpy_iterator():  # one Python step per batch; the examples are joined by numpy below
        targets += [np.ravel(t) for t in batch["targets"]]
        inputs += [np.ravel(t) for t in batch["inputs"]] if has_inputs else [np.zeros(0, np.int32)] * len(batch["targets"])
        if has_raw:
            columns = [batch[k] for k in registry.RAW_TEXT_FEATURES]
            raw += [dict(zip(registry.RAW_TEXT_FEATURES, (v.decode() for v in values))) for values in zip(*columns)]
    return _join(view, split, inputs, targets, tuple(raw) if has_raw else None)


def _join(view: registry.TaskView, split: str, inputs: list, targets: list, raw: tuple | None) -> TaskTokens:
    """Example j = inputs[j] ++ targets[j] as one flat TaskTokens, weight 0 on inputs (1 for full-sequence loss)."""
    full_loss = view.info.full_sequence_loss
    target_lengths = np.fromiter(map(len, targets), np.int64, len(targets))
    empty = np.flatnonzero(target_lengths == 0)
    if len(empty):
        raise TaskDataError(f"task {view.name!r}, split {split!r}, example {int(empty[0])}: empty 'targets' after "
                            "the task's preprocessors (nothing to train on)")
    input_lengths = np.fromiter(map(len, inputs), np.int64, len(inputs))
    pieces = [None] * (2 * len(targets))  # example j: inputs_j ++ targets_j
    pieces[0::2], pieces[1::2] = inputs, targets
    piece_lengths = np.stack([input_lengths, target_lengths], axis=1).reshape(-1)
    piece_weights = np.tile(np.array([1.0 if full_loss else 0.0, 1.0], np.float32), len(targets))
    ids = np.concatenate(pieces).astype(np.int32) if pieces else np.zeros(0, np.int32)
    tokens = TaskTokens(ids, np.repeat(piece_weights, piece_lengths), np.concatenate(
        [[0], np.cumsum(input_lengths + target_lengths)]).astype(np.int64), np.arange(len(targets), dtype=np.int64),
        input_lengths)
    return tokens.with_raw(raw)


def _read_in_python(view: registry.TaskView, split: str) -> TaskTokens:
    """What `_read_dataset` yields for one of our tasks with only our preprocessors, computed without tf.data
    (`lazy_task_shard.encode_examples`). Building and tracing a tf.data pipeline costs ~0.3-1 s a task whatever
    its size (perf/RESULTS.md, issue 23); this costs the formatting and the tokenizer only.
    `tests/data/test_task_cache_python_read.py` checks that both give the same arrays."""
    rows = registry.load_raw_examples(view.name, split, memoize=False)
    inputs, targets = encode_examples(view, rows)
    return _join(view, split, inputs, targets, tuple({k: ex[k] for k in registry.RAW_TEXT_FEATURES} for ex in rows))


def _reads_lazily(task_name: str, split: str, use_cached: bool, cache_dir: str | None) -> bool:
    view = registry.get_task(task_name)
    if use_cached or not PYTHON_READS_OF_STANDARD_TASKS or not view.standard_pipeline:
        return False
    return not (cache_dir and cache_file(task_name, split, cache_dir=cache_dir).is_file())


def cache_file(task_name: str, split: str, *, use_cached: bool = False, cache_dir: str) -> pathlib.Path:
    """The token cache file of a task's split under `cache_dir`. Its name holds a digest of the registration's
    content (vocabulary, metadata, format seed, preprocessors), not of this process's object ids, so every host
    and every restart finds the same file and a changed registration never reads a stale one."""
    view = registry.get_task(task_name)
    disk_key = (task_name, split, bool(use_cached), vocabulary_key(view.vocabulary), repr(view.info),
                view.raw.format_seed if view.raw else None,
                tuple(map(preprocessor_name, view.seqio_task.preprocessors)))
    return cache_path(cache_dir, disk_key)


def preprocessor_name(preprocessor) -> str:
    """A preprocessor's name in the cache key: its `__name__`, else its repr without memory addresses. Why: our tasks'
    `seqio.CacheDatasetPlaceholder()` reprs as `<... object at 0x7f...>`, so the key held an address that changes in
    every process, and a restart or another host (or the bench's warm start) never found the files `tasks cache`
    wrote (perf/RESULTS.md, issue 23)."""
    name = getattr(preprocessor, "__name__", None)
    return name if name is not None else re.sub(r" at 0x[0-9a-fA-F]+", "", repr(preprocessor))


def forget_in_memory() -> None:
    """Drop every split this process holds (as a restarted process would start): the next read is from the
    disk cache or the task's pipeline again. Waits for the streams' read-ahead first (a restart has none running,
    and tests count the reads after this)."""
    READ_AHEAD.wait_idle(60)
    RESIDENT.clear()


def _count(counter: collections.Counter, task_name: str) -> None:
    with _LOCK:  # the stream's read-ahead thread reads too
        counter[task_name] += 1


def split_tokens(task_name: str, split: str, *, use_cached: bool = False, cache_dir: str | None = None,
                 memoize: bool = True, with_raw: bool = True) -> TaskTokens:
    """The whole split of a task, tokenized through its seqio pipeline (kept in `RESIDENT` unless `memoize=False`;
    optionally on disk). `with_raw=False`: a split read from the disk cache skips its raw texts."""
    view = registry.get_task(task_name)
    key = (task_name, "split", view.generation, split, bool(use_cached), vocabulary_key(view.vocabulary))

    def read() -> TaskTokens:
        path = cache_file(task_name, split, use_cached=use_cached, cache_dir=cache_dir) if cache_dir else None
        tokens = load_tokens(path, with_raw=with_raw or memoize) if path else None
        if tokens is not None:
            _count(DISK_READS, task_name)
            return tokens
        tokens = _read_dataset(view, split, use_cached)
        _count(PIPELINE_READS, task_name)
        if path:
            save_tokens(path, tokens)
        return tokens

    return RESIDENT.get_or_read(key, read) if memoize else read()


def task_tokens(task_name: str, split: str, *, shard_index: int = 0, num_shards: int = 1, cap: int | None = None,
                seed: int = 0, use_cached: bool = False, cache_dir: str | None = None) -> TaskTokens:
    """This shard of a task's (capped) split: the rows of `split_tokens` at `shard_positions`."""
    return task_shards(task_name, split, [shard_index], num_shards=num_shards, cap=cap, seed=seed,
                       use_cached=use_cached, cache_dir=cache_dir, keep_split=True)[shard_index]


def task_shards(task_name: str, split: str, shard_indices, *, num_shards: int, cap: int | None = None, seed: int = 0,
                use_cached: bool = False, cache_dir: str | None = None, keep_split: bool = False,
                with_raw: bool = True, lazy: bool = False) -> dict[int, TaskTokens | LazyTaskShard]:
    """Several shards of a task's (capped) split from one read of it, kept together as one `RESIDENT` entry. The
    training stream asks for all of its groups' shards at once with `keep_split=False`, so the process holds this
    host's shards and not also the whole split (the memory bound of docs/ARCHITECTURE.md); `with_raw=False` drops
    the raw texts (only MetaICL demonstrations laid out as text read them). `lazy=True`: one of our tasks with only
    our preprocessors and no full split in `cache_dir` gives `LazyTaskShard`s, whose examples are tokenized when
    first drawn (the same ids)."""
    key = _shards_key(task_name, split, num_shards, cap, seed, use_cached, with_raw, lazy)
    wanted = list(shard_indices)
    options = dict(num_shards=num_shards, cap=cap, seed=seed, use_cached=use_cached, cache_dir=cache_dir,
                   keep_split=keep_split, with_raw=with_raw, lazy=lazy)
    shards = RESIDENT.get_or_read(key, lambda: _counted_growth(key, _read_shards(task_name, split, wanted, **options)))
    missing = [g for g in wanted if g not in shards]
    if missing:  # another reader of this process asked for other groups of the same task first
        shards = {**shards, **_read_shards(task_name, split, missing, **options)}
        RESIDENT.put(key, shards, merge=lambda old, new: {**old, **new})
    return {g: shards[g] for g in wanted}


def _counted_growth(key: tuple, shards: dict) -> dict:
    """Lazy shards report the examples they tokenize to their `RESIDENT` entry (its size grows with them)."""
    for shard in shards.values():
        if isinstance(shard, LazyTaskShard):
            shard.on_grow = functools.partial(RESIDENT.grow, key, shards)
    return shards


def _shards_key(task_name: str, split: str, num_shards: int, cap: int | None, seed: int, use_cached: bool,
                with_raw: bool, lazy: bool) -> tuple:
    return (task_name, "shards", registry.get_task(task_name).generation, split, bool(use_cached), num_shards, cap,
            seed, with_raw, lazy)


def resident_task_shards(task_name: str, split: str, *, num_shards: int, cap: int | None = None, seed: int = 0,
                         use_cached: bool = False, with_raw: bool = True, lazy: bool = False) -> dict | None:
    """The shards `task_shards` holds of a task in `RESIDENT` with these options, or None (reads nothing)."""
    return RESIDENT.peek(_shards_key(task_name, split, num_shards, cap, seed, use_cached, with_raw, lazy))


def _read_shards(task_name: str, split: str, groups: list[int], *, num_shards: int, cap: int | None, seed: int,
                 use_cached: bool, cache_dir: str | None, keep_split: bool, with_raw: bool,
                 lazy: bool) -> dict[int, TaskTokens | LazyTaskShard]:
    """`task_shards`' read: raw examples for lazy shards, else the full split (kept only with `keep_split`)."""
    if lazy and not keep_split and _reads_lazily(task_name, split, use_cached, cache_dir):
        view = registry.get_task(task_name)
        rows = registry.load_raw_examples(task_name, split, memoize=False)
        _count(PIPELINE_READS, task_name)
        if not rows:
            raise TaskDataError(f"task {task_name!r} split {split!r} has no examples")
        return {g: LazyTaskShard(view, rows, shard_positions(len(rows), cap, g, num_shards, task_name, seed), with_raw)
                for g in groups}
    full = split_tokens(task_name, split, use_cached=use_cached, cache_dir=cache_dir, memoize=keep_split,
                        with_raw=with_raw)
    if len(full) == 0:
        raise TaskDataError(f"task {task_name!r} split {split!r} has no examples")
    if not with_raw:
        full = full.with_raw(None)
    return {g: full.select(shard_positions(len(full), cap, g, num_shards, task_name, seed)) for g in groups}
