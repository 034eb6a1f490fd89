"""The deterministic, step-indexed training stream (batch contract in docs/ARCHITECTURE.md).

The global batch of a step is a pure function of (mixture rates, seed, step, packing groups), *not* of how
many hosts read it (Levanter's rule): the batch's rows are cut into G = batch_size / packing_group_rows packing
groups, group g is packed from data shard g of G (SeqIO `ShardInfo(g, G)` over each task's capped examples)
with all randomness from `np.random.default_rng([seed, step, g])`, and a host computes only the groups of the
rows it feeds (hosts must divide G). Nothing is carried between steps, so resuming at a checkpoint's step
reproduces the exact batches, any step can be computed out of order, and a run restarted on a different
number of hosts continues with the same global batches.

Every task's examples come from its own seqio pipeline (`task.get_dataset`, read once per process by
`optiml_jax.data.task_cache`): any `seqio.Task` or `seqio.Mixture` trains, with SeqIO's mixing rates.

Per step and group: draw (task, example) pairs by the mixture rates in rounds sized to the free space, place
each round best-fit-decreasing into the group's rows, and stop when no row can take the shortest example seen
or after `max_rounds`. Examples drawn but not placed are counted (`StepStats.unplaced`), not used: this keeps
steps independent. Overlong examples are cut on the left and counted (`StepStats.truncated`).
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Mapping

import gin
import numpy as np

from optiml_jax.data import packing
from optiml_jax.data.mixture_names import ensure_registered
from optiml_jax.data.demonstrations import MetaICLConfig, draw_num_shots, token_space_demonstrations
from optiml_jax.data.task_cache import task_tokens, vocabulary_key
from optiml_jax.data.tokenization import tokenize_pieces, truncate_left
from optiml_jax.tasks import mixtures, registry
from optiml_jax.tasks.formatting import draw_delimiter, layout
from optiml_jax.tasks.recipe import MixtureRecipe
from optiml_jax.vocabularies.special_ids import special_ids_of


def sequence_length(task_feature_lengths: int | Mapping[str, int]) -> int:
    """Decoder length: an int, or the sum of a T5X `task_feature_lengths` mapping (e.g. {"targets": 2048})."""
    if isinstance(task_feature_lengths, int):
        return task_feature_lengths
    return int(sum(task_feature_lengths.values()))


def check_feature_lengths(name: str, task_feature_lengths: Mapping[str, int], task_names) -> None:
    """TASK_FEATURE_LENGTHS keys must be features of the mixture's tasks (seqio checks the same): the row is their
    sum, so a misspelled key (`{'tragets': 256}`) would otherwise change the row length silently."""
    features: set[str] = set()
    for t in task_names:
        features |= set(registry.get_task(t).seqio_task.output_features)
    unknown = sorted(set(task_feature_lengths) - features)
    if unknown:
        raise ValueError(f"TASK_FEATURE_LENGTHS = {dict(task_feature_lengths)}: {', '.join(map(repr, unknown))} "
                         f"is not a feature of {name!r}, whose tasks have features {sorted(features)}")


@dataclasses.dataclass
class StepStats:
    examples: int = 0
    truncated: int = 0
    unplaced: int = 0
    efficiency: float = 0.0
    per_task: collections.Counter = dataclasses.field(default_factory=collections.Counter)  # placed examples
    drawn: collections.Counter = dataclasses.field(default_factory=collections.Counter)  # every draw, placed or not


class TrainStream:
    """Packed training batches of `mixture_or_task_name` for one host (see module docstring)."""

    def __init__(self, mixture_or_task_name: str, task_feature_lengths, batch_size: int, seed: int = 0,
                 shard_index: int = 0, num_shards: int = 1, *, split: str = "train",
                 metaicl: MetaICLConfig | None = None, recipe: MixtureRecipe | None = None,
                 cache_dir: str | None = None, use_cached: bool = False, max_rounds: int = 12,
                 packing_group_rows: int = 1, read_all_tasks_first: bool = True):
        if batch_size % num_shards:
            raise ValueError(f"global batch_size {batch_size} is not divisible by num_shards {num_shards}")
        if not 0 <= shard_index < num_shards:
            raise ValueError(f"shard_index {shard_index} out of range for num_shards {num_shards}")
        if packing_group_rows < 1 or batch_size % packing_group_rows:
            raise ValueError(f"packing_group_rows={packing_group_rows} must be >= 1 and divide the global "
                             f"batch_size {batch_size}")
        self.num_groups = batch_size // packing_group_rows
        if self.num_groups % num_shards:
            raise ValueError(f"{self.num_groups} packing groups (batch_size {batch_size} / packing_group_rows "
                             f"{packing_group_rows}) cannot be split evenly over {num_shards} hosts; choose "
                             "packing_group_rows so that the number of hosts divides batch_size / packing_group_rows")
        self.name, self.split, self.seed = mixture_or_task_name, split, seed
        self.shard_index, self.num_shards = shard_index, num_shards
        self.rows = batch_size // num_shards
        self.group_rows = packing_group_rows
        groups_per_host = self.num_groups // num_shards
        self.groups = range(shard_index * groups_per_host, (shard_index + 1) * groups_per_host)
        self.length = sequence_length(task_feature_lengths)
        self.metaicl = metaicl or MetaICLConfig()
        self.recipe = recipe or MixtureRecipe()
        self.cache_dir, self.use_cached, self.max_rounds = cache_dir, bool(use_cached), max_rounds
        rates = mixtures.resolve_rates(mixture_or_task_name, recipe)
        self.task_names = sorted(t for t, r in rates.items() if r > 0)
        self.probs = np.array([rates[t] for t in self.task_names], np.float64)
        self.probs /= self.probs.sum()
        vocabs = {id(registry.get_task(t).vocabulary): registry.get_task(t).vocabulary for t in self.task_names}
        if len({repr(v) for v in vocabs.values()}) > 1:
            raise ValueError(f"{mixture_or_task_name!r}: tasks use different vocabularies: {set(map(repr, vocabs.values()))}")
        self.vocabulary = next(iter(vocabs.values()))
        if not isinstance(task_feature_lengths, int):
            check_feature_lengths(mixture_or_task_name, task_feature_lengths, self.task_names)
        self.special_ids = special_ids_of(self.vocabulary)  # bos / eos / pad of every packed row
        self._shards: dict[tuple[str, int], object] = {}
        # False: each task is read when first drawn (one batch to look at, not the whole mixture); the batches
        # are the same either way, only when the reading happens differs
        self._materialized = not read_all_tasks_first

    @property
    def rates(self) -> dict[str, float]:
        return dict(zip(self.task_names, self.probs.tolist()))

    def _tokens(self, task_name: str, data_shard: int):
        """This stream's shard of a task, memoized here (it is asked for once per drawn example): a stream reads
        each task as it was registered when the stream first drew from it."""
        key = (task_name, data_shard)
        toks = self._shards.get(key)
        if toks is None:
            info = registry.get_task(task_name).info
            toks = task_tokens(task_name, self.split, shard_index=data_shard, num_shards=self.num_groups,
                               cap=self.recipe.capped_count(info, 1 << 62), use_cached=self.use_cached,
                               cache_dir=self.cache_dir)
            self._shards[key] = toks
        return toks

    def _metaicl_example(self, rng, task_name: str, data_shard: int, j: int, shots: int):
        """A k-shot example: `shots` other examples of this shard of the task's split as demonstrations, dropped
        from the end until it fits. Laid out as text (task-level placement where the task gives a definition)
        when the task's dataset carries raw text fields, else in token space (instance-level)."""
        view = registry.get_task(task_name)
        toks = self._tokens(task_name, data_shard)
        others = np.delete(np.arange(len(toks)), j) if len(toks) > 1 else np.arange(0)
        demo_pos = list(rng.choice(others, size=min(shots, len(others)), replace=False)) if len(others) else []
        cfg = self.metaicl
        if toks.raw is None:
            return token_space_demonstrations(toks, j, demo_pos, view.vocabulary, cfg, self.length,
                                              full_sequence_loss=view.info.full_sequence_loss)
        ex = toks.raw[j]
        demos = [toks.raw[d] for d in demo_pos]
        delim = draw_delimiter(task_name, ex["id"], view.raw.format_seed if view.raw else 0)
        while True:
            pieces = layout(view.info, ex, demos, delimiter=delim, separator=cfg.separator, loss=cfg.loss)
            ids, w = tokenize_pieces(view.vocabulary, [pieces])[0]
            if len(ids) <= self.length or not demos:
                return ids, w
            demos.pop()

    @property
    def tasks_read(self) -> list[str]:
        """The tasks of the mixture this stream has read so far (all of them after `materialize`)."""
        return sorted({name for name, _ in self._shards})

    def describe(self) -> dict:
        """What this stream trains on, for the run's first log lines and MODEL_DIR/run.json: the mixture, its
        rates, the seed, the tokenizer, and every task read so far with its example and token counts (this host's
        data shards)."""
        read: dict[str, dict[str, int]] = {}
        for (name, _), toks in sorted(self._shards.items()):
            entry = read.setdefault(name, {"examples": 0, "tokens": 0})
            entry["examples"] += len(toks)
            entry["tokens"] += int(toks.offsets[-1])
        return {"source": "mixture", "mixture_or_task_name": self.name, "split": self.split, "seed": self.seed,
                "tokenizer": vocabulary_key(self.vocabulary), "vocab_size": int(self.vocabulary.vocab_size),
                "num_tasks": len(self.task_names), "rates": self.rates, "tasks_read": read}

    def materialize(self) -> None:
        """Read every task of the mixture (this host's data shards) now, once: its seqio pipeline runs here, so
        later steps cost packing only. The first `get_batch` calls it."""
        for name in self.task_names:
            for g in self.groups:
                self._tokens(name, g)
        self._materialized = True

    def get_batch_with_stats(self, step: int) -> tuple[dict[str, np.ndarray], StepStats]:
        """This host's rows for `step`: its packing groups, in order, and their summed statistics."""
        if not self._materialized:
            self.materialize()
        stats = StepStats()
        parts = [self._pack_group(int(step), g, stats) for g in self.groups]
        batch = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        stats.efficiency = packing.efficiency(batch)
        return batch, stats

    def _pack_group(self, step: int, group: int, stats: StepStats) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, step, group])
        free = np.full(self.group_rows, self.length, np.int64)
        chosen: list[tuple[np.ndarray, np.ndarray]] = []
        rows_of: list[np.ndarray] = []
        mean_len, min_len = 64.0, self.length
        for _ in range(self.max_rounds):
            if free.max() < min_len:
                break
            m = max(4, int(np.ceil(free.sum() / mean_len)))
            tasks = rng.choice(len(self.task_names), size=m, p=self.probs)
            u = rng.random(m)
            shots = draw_num_shots(rng, self.metaicl, m)
            drawn = []
            for t, ui, k in zip(tasks, u, shots):
                name = self.task_names[t]
                toks = self._tokens(name, group)
                j = min(int(ui * len(toks)), len(toks) - 1)
                ids, w = self._metaicl_example(rng, name, group, j, int(k)) if k else toks.example(j)
                ids, w, cut = truncate_left(ids, w, self.length)
                stats.truncated += cut
                stats.drawn[name] += 1
                drawn.append((ids, w, name))
            lengths = np.array([len(d[0]) for d in drawn])
            mean_len = 0.5 * mean_len + 0.5 * float(lengths.mean())
            min_len = min(min_len, int(lengths.min()))
            rows = packing.best_fit_decreasing(lengths, free)
            for (ids, w, name), r in zip(drawn, rows):
                if r >= 0:
                    chosen.append((ids, w))
                    stats.per_task[name] += 1
            rows_of.append(rows[rows >= 0])
            stats.unplaced += int((rows < 0).sum())
            if (rows < 0).all():
                break
        stats.examples += len(chosen)
        return packing.write_rows(chosen, np.concatenate(rows_of) if rows_of else np.zeros(0, np.int64),
                                  self.group_rows, self.length, self.special_ids)

    def get_batch(self, step: int) -> dict[str, np.ndarray]:
        """This host's [batch_size // num_shards, length] batch for `step` (the batch contract)."""
        return self.get_batch_with_stats(step)[0]


@gin.configurable
def get_train_stream(mixture_or_task_name: str = gin.REQUIRED, task_feature_lengths=2048,
                     batch_size: int = gin.REQUIRED, seed: int = 0, shard_index: int = 0, num_shards: int = 1,
                     split: str = "train", metaicl: MetaICLConfig | None = None,
                     recipe: MixtureRecipe | None = None, cache_dir: str | None = None,
                     use_cached: bool = False, packing_group_rows: int = 1) -> TrainStream:
    """The one training stream of every run file (gin/runs/train.gin: `train.stream_factory = @get_train_stream`).

    `mixture_or_task_name` decides the data: a registered task or mixture, or an OPT-IML Bench mixture registered
    on demand from gin/bench/opt_iml_bench.gin's data macros (`optiml_jax.data.mixture_names`).

    `batch_size` is global; this host gets `batch_size // num_shards` rows of `sequence_length(task_feature_lengths)`.
    `packing_group_rows`: rows packed together from one data shard (see the module docstring); the number of
    hosts must divide `batch_size / packing_group_rows`, and the global batch does not depend on that number.
    `metaicl`/`recipe` default to the gin-configured `MetaICLConfig()` / `MixtureRecipe()`. `use_cached` (gin:
    `%USE_CACHED_TASKS`) reads every task from its `seqio.cache_tasks_main` cache.
    """
    ensure_registered(mixture_or_task_name)
    return TrainStream(mixture_or_task_name, task_feature_lengths, batch_size, seed, shard_index, num_shards,
                       split=split, metaicl=metaicl, recipe=recipe, cache_dir=cache_dir, use_cached=use_cached,
                       packing_group_rows=packing_group_rows)
