"""The deterministic, step-indexed training stream (batch contract in docs/ARCHITECTURE.md).

The global batch of a step is a pure function of (mixture rates, seed, step, packing groups), *not* of how
many hosts read it (Levanter's rule): the batch's rows are cut into G = batch_size / packing_group_rows packing
groups, group g is packed from data shard g of G (SeqIO `ShardInfo(g, G)` over each task's capped examples)
with all randomness from seeds of (seed, g, draw index), and a host computes only the groups of the
rows it feeds (hosts must divide G).

Every task's examples come from its own seqio pipeline (`task.get_dataset`, read once per process by
`optiml_jax.data.task_cache`): any `seqio.Task` or `seqio.Mixture` trains, with SeqIO's mixing rates. A task of ours
with only our preprocessors gives the same ids without tf.data, tokenized an example at a time as drawn
(`optiml_jax.data.lazy_task_shard`) unless its full split is in `cache_dir`.

Memory: the process holds this host's shards of tasks (one `task_cache.RESIDENT` entry per task read) in at most
max(`resident_shards.RESIDENT_MIB`, P) bytes, P = the size of the tasks of the draws its streams protect: per group,
the carried draws and the next max(R, 1) x D draws, with R = `read_ahead_steps` and D = the most new draws one
group made in the step just packed. Least recently used unprotected tasks are dropped and read again when drawn
again: the same tokens, so the same batches. P is what the next steps need: at most the distinct tasks of
groups x (max_carry + max(R, 1) x D) draws, and the whole catalog once one step draws from every task (the paper's
256 x 2048 batch at 2,000 tasks). Measured in perf/RESULTS.md (issue 23).
With `read_ahead_steps` R > 0 (the trainer's stream, `get_train_stream`), after each step a background thread reads
the tasks and tokenizes the examples of those next draws (`optiml_jax.data.read_ahead`) while the trainer runs.

Per group and step (`optiml_jax.data.carry_packer`): the group draws (task, example) pairs by the mixture rates
from its own draw sequence (draw k of group g: `np.random.default_rng([seed, 1, g, k // DRAW_BLOCK])`), places each
best-fit into the group's rows, and carries a draw that fits no row to the next step: no drawn example is lost, so
the packed examples' tasks are the sampler's draws at the mixture rates (seqio's rates are shares of *examples*).
What a group carries between steps (its next draw index and its carried draws) is the stream's `state()`, stored
with each checkpoint; `restore(state, step)` continues from it bitwise, and without it a step's state is recomputed
by replaying from the nearest known step (any step can still be computed, in any order). The state is per group,
so a run restarted on a different number of hosts continues with the same global batches. Overlong examples are
cut on the left and counted (`StepStats.truncated`).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import weakref
from typing import Mapping

import gin
import numpy as np

from optiml_jax.data import carry_packer, packing
from optiml_jax.data.chat_examples import chat_demonstration_example, chat_task_tokens
from optiml_jax.data.mixture_names import ensure_registered, run_tokenizer
from optiml_jax.data.demonstrations import MetaICLConfig, draw_num_shots, token_space_demonstrations
from optiml_jax.data.lazy_task_shard import LazyTaskShard
from optiml_jax.data.read_ahead import READ_AHEAD
from optiml_jax.data.task_cache import RESIDENT, resident_task_shards, task_shards, vocabulary_key
from optiml_jax.data.tokenization import tokenize_pieces, truncate_left
from optiml_jax.tasks import mixtures, registry
from optiml_jax.tasks.formatting import draw_delimiter, draw_demonstrations, fit_demonstrations, layout
from optiml_jax.tasks.recipe import MixtureRecipe
from optiml_jax.vocabularies.chat_template import ChatTemplate
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


DRAW_BLOCK = 512  # draws generated per RNG call (a group's draw k comes from block k // DRAW_BLOCK)
STATE_VERSION = 1
_KEEP_RECENT_STATES = 64  # step states kept for out-of-order calls; older ones every _KEEP_RECENT_STATES-th step


@dataclasses.dataclass
class StepStats:
    examples: int = 0  # placed this step (carried-in ones included)
    truncated: int = 0  # of this step's new draws
    unplaced: int = 0  # drawn and carried to the next step (never dropped)
    efficiency: float = 0.0
    per_task: collections.Counter = dataclasses.field(default_factory=collections.Counter)  # placed examples
    drawn: collections.Counter = dataclasses.field(default_factory=collections.Counter)  # this step's new draws
    placed_tokens: collections.Counter = dataclasses.field(default_factory=collections.Counter)  # tokens of per_task


class TrainStream:
    """Packed training batches of `mixture_or_task_name` for one host (see module docstring)."""

    def __init__(self, mixture_or_task_name: str, task_feature_lengths, batch_size: int, seed: int = 0,
                 shard_index: int = 0, num_shards: int = 1, *, split: str = "train",
                 metaicl: MetaICLConfig | None = None, recipe: MixtureRecipe | None = None,
                 cache_dir: str | None = None, use_cached: bool = False, max_carry: int | None = None,
                 packing_group_rows: int = 1, read_all_tasks_first: bool = False, use_chat_template: bool = False,
                 read_ahead_steps: int = 0):
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
        self.cache_dir, self.use_cached = cache_dir, bool(use_cached)
        # the most draws a group carries to its next step (each waits at most this many steps)
        self.max_carry = int(max_carry) if max_carry is not None else max(8, packing_group_rows)
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
        # USE_CHAT_TEMPLATE: examples as conversations through the tokenizer's template (data/chat_examples.py)
        self.chat = ChatTemplate.from_vocabulary(self.vocabulary) if use_chat_template else None
        self._chat_shards: dict[tuple[str, int], object] = {}
        # the shards of the step being packed and of the tasks the next steps draw (`_plan_next`)
        self._step_shards: dict[tuple[str, int], object] = {}
        # every shard read that something still holds (`RESIDENT` mostly): weak, so it bounds nothing itself
        self._alive_shards: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
        self._read_info: dict[str, dict[str, int]] = {}  # every task read: examples, tokens (as last seen)
        self._caps: dict[str, int | None] = {}
        # 0: no read-ahead (a stream with no trainer beside it gains nothing from a thread); see the module docstring
        self.read_ahead_steps = int(read_ahead_steps)
        self._read_ahead_ticket = 0
        self._protected: frozenset[str] = frozenset()
        self._owner = ("train_stream", id(self))
        weakref.finalize(self, RESIDENT.release, self._owner)
        self._blocks: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        # step -> this host's group states before it (step 0: nothing drawn yet)
        self._states: dict[int, tuple[carry_packer.GroupState, ...]] = {
            0: tuple(carry_packer.GroupState() for _ in self.groups)}
        # False (default): each task is read when first drawn, so a 2,000-task mixture starts after reading what
        # its first step draws (with `cache_dir`, a restart or another host loads only those files); True reads
        # every task before the first batch. The batches are the same either way
        self._materialized = not read_all_tasks_first
        # our tasks without a full split in `cache_dir` are tokenized an example at a time, as drawn
        # (`optiml_jax.data.lazy_task_shard`); read_all_tasks_first reads whole splits
        self.tokenize_when_drawn = not read_all_tasks_first

    @property
    def rates(self) -> dict[str, float]:
        return dict(zip(self.task_names, self.probs.tolist()))

    def _read_task(self, task_name: str) -> dict:
        """Every shard of this host's groups of a task, from one read of it (not the whole split), or resident
        (`task_cache.RESIDENT`; the read-ahead thread calls this too)."""
        return task_shards(task_name, self.split, self.groups, num_shards=self.num_groups, cap=self._cap(task_name),
                           use_cached=self.use_cached, cache_dir=self.cache_dir, with_raw=self.metaicl.enabled,
                           lazy=self.tokenize_when_drawn)

    def _cap(self, task_name: str) -> int | None:
        """The task's example cap under this stream's recipe (memoized: it is asked for per task read)."""
        cap = self._caps.get(task_name, -1)
        if cap == -1:
            cap = self._caps[task_name] = self.recipe.capped_count(registry.get_task(task_name).info, 1 << 62)
        return cap

    def _tokens(self, task_name: str, data_shard: int):
        """This stream's shard of a task (it is asked for once per drawn example: memoized for the step)."""
        key = (task_name, data_shard)
        toks = self._step_shards.get(key)
        if toks is None:
            toks = self._alive_shards.get(key)  # still held by the process: no lookup in RESIDENT
            if toks is not None:
                self._step_shards[key] = toks
                return toks
            shards = self._read_task(task_name)
            for g, t in shards.items():
                self._step_shards[(task_name, g)] = self._alive_shards[(task_name, g)] = t
            if task_name not in self._read_info:
                self._read_info[task_name] = {"examples": sum(len(t) for t in shards.values()), "tokens": 0}
            toks = shards[data_shard]
        return toks

    def resident_shards(self) -> dict[tuple[str, int], object]:
        """(task, data shard) -> shard, of the tasks this stream read that the process still holds (reads none)."""
        out = {}
        for name in self._read_info:
            shards = resident_task_shards(name, self.split, num_shards=self.num_groups, cap=self._cap(name),
                                          use_cached=self.use_cached, with_raw=self.metaicl.enabled,
                                          lazy=self.tokenize_when_drawn)
            out.update({(name, g): t for g, t in (shards or {}).items() if g in self.groups})
        return out

    def _end_step_shards(self, keep: frozenset[str] = frozenset()) -> None:
        """Let the step's shards go, but those of the tasks in `keep` (the next steps' draws)."""
        self._step_shards = {k: v for k, v in self._step_shards.items() if k[0] in keep}

    def _note_tokens(self) -> None:
        """The tokens of each task read (`describe`), from its shards still resident."""
        tokens = collections.Counter()
        for (name, _), toks in self.resident_shards().items():
            tokens[name] += int(toks.tokens_read if isinstance(toks, LazyTaskShard) else toks.offsets[-1])
        for name, n in tokens.items():
            entry = self._read_info[name]
            entry["tokens"] = max(entry["tokens"], n)

    def _example_tokens(self, task_name: str, data_shard: int):
        """The examples this stream trains on: `_tokens`, or with the chat switch their conversations."""
        if self.chat is None:
            return self._tokens(task_name, data_shard)
        key = (task_name, data_shard)
        if key not in self._chat_shards:
            self._chat_shards[key] = chat_task_tokens(registry.get_task(task_name), self._tokens(task_name, data_shard),
                                                      self.chat, self.special_ids)
            resident = RESIDENT.tasks() | self._protected  # bounded like the shards they are made from
            for old in [k for k in self._chat_shards if k[0] not in resident]:
                del self._chat_shards[old]
        return self._chat_shards[key]

    def _metaicl_example(self, rng, task_name: str, data_shard: int, j: int, shots: int):
        """A k-shot example: `shots` other examples of this shard of the task's split as demonstrations, dropped
        from the end until it fits. Laid out as text (task-level placement where the task gives a definition)
        when the task's dataset carries raw text fields, else in token space (instance-level)."""
        view = registry.get_task(task_name)
        toks = self._tokens(task_name, data_shard)
        others = np.delete(np.arange(len(toks)), j) if len(toks) > 1 else np.arange(0)
        demo_pos = draw_demonstrations(rng, others, shots)
        cfg = self.metaicl
        if self.chat is not None and not view.info.full_sequence_loss:
            return chat_demonstration_example(view, toks, j, demo_pos, self.chat, self.special_ids, self.length,
                                              separator=cfg.separator, loss=cfg.loss)
        if toks.raw is None:
            return token_space_demonstrations(toks, j, demo_pos, view.vocabulary, cfg, self.length,
                                              full_sequence_loss=view.info.full_sequence_loss)
        ex = toks.raw[j]
        demos = [toks.raw[d] for d in demo_pos]
        delim = draw_delimiter(task_name, ex["id"], view.raw.format_seed if view.raw else 0)
        return fit_demonstrations(
            lambda ds: tokenize_pieces(view.vocabulary, [layout(view.info, ex, ds, delimiter=delim,
                                                                separator=cfg.separator, loss=cfg.loss)])[0],
            demos, lambda built: len(built[0]) <= self.length)

    @property
    def tasks_read(self) -> list[str]:
        """The tasks of the mixture this stream has read so far (all of them after `materialize`)."""
        return sorted(self._read_info)

    def describe(self) -> dict:
        """What this stream trains on, for the run's first log lines and MODEL_DIR/run.json: the mixture, its
        rates, the seed, the tokenizer, and every task read so far with its example and token counts (this host's
        data shards; for a task tokenized as drawn, the tokens of the examples tokenized in it, as last seen here
        while it was resident: a task dropped from memory and read again counts from its new read once that one
        has more)."""
        self._note_tokens()
        read = {name: dict(entry) for name, entry in sorted(self._read_info.items())}
        out = {"source": "mixture", "mixture_or_task_name": self.name, "split": self.split, "seed": self.seed,
               "tokenizer": vocabulary_key(self.vocabulary), "vocab_size": int(self.vocabulary.vocab_size),
               "num_tasks": len(self.task_names), "rates": self.rates, "tasks_read": read}
        if self.chat is not None:
            out["chat_template"] = True
        return out

    def materialize(self) -> None:
        """Read every task of the mixture (this host's data shards) now, once: its seqio pipeline runs here, so
        later steps cost packing only. The first `get_batch` calls it when `read_all_tasks_first` (which holds the
        whole catalog: the process's resident budget is lifted)."""
        RESIDENT.budget = float("inf")
        for name in self.task_names:
            for g in self.groups:
                self._tokens(name, g)
        self._materialized = True

    def _draw(self, group: int, k: int) -> tuple[int, float, int]:
        """Draw k of a group: (task index, uniform for the example, shots)."""
        b = k // DRAW_BLOCK
        block = self._blocks.get((group, b))
        if block is None:
            rng = np.random.default_rng([self.seed, 1, group, b])
            block = (rng.choice(len(self.task_names), size=DRAW_BLOCK, p=self.probs), rng.random(DRAW_BLOCK),
                     draw_num_shots(rng, self.metaicl, DRAW_BLOCK))
            if len(self._blocks) > 4 * len(self.groups) + 64:
                self._blocks.clear()
            self._blocks[(group, b)] = block
        i = k % DRAW_BLOCK
        return int(block[0][i]), float(block[1][i]), int(block[2][i])

    def _example(self, group: int, k: int):
        """(task name, ids, weights, truncated) of a group's draw k (the same every time it is asked for)."""
        t, u, shots = self._draw(group, k)
        name = self.task_names[t]
        toks = self._tokens(name, group)
        j = min(int(u * len(toks)), len(toks) - 1)
        if shots:
            ids, w = self._metaicl_example(np.random.default_rng([self.seed, 2, group, k]), name, group, j, shots)
        else:
            ids, w = self._example_tokens(name, group).example(j)
        ids, w, cut = truncate_left(ids, w, self.length)
        return name, ids, w, cut

    def _remember(self, step: int, states) -> None:
        self._states[step] = tuple(states)
        newest = max(self._states)
        for s in [s for s in self._states if s < newest - _KEEP_RECENT_STATES and s % _KEEP_RECENT_STATES]:
            del self._states[s]

    def _states_before(self, step: int) -> tuple[carry_packer.GroupState, ...]:
        """This host's group states before `step`: remembered, or replayed from the nearest earlier known step."""
        if step in self._states:
            return self._states[step]
        known = max(s for s in self._states if s <= step)
        states = self._states[known]
        for s in range(known, step):
            states = tuple(self._pack_group(s, g, st, None)[1] for g, st in zip(self.groups, states))
            self._remember(s + 1, states)
            self._end_step_shards()
        return states

    def get_batch_with_stats(self, step: int) -> tuple[dict[str, np.ndarray], StepStats]:
        """This host's rows for `step`: its packing groups, in order, and their summed statistics."""
        if not self._materialized:
            self.materialize()
        step = int(step)
        stats = StepStats()
        parts, after = [], []
        before = self._states_before(step)
        for g, st in zip(self.groups, before):
            batch, new_state = self._pack_group(step, g, st, stats)
            parts.append(batch)
            after.append(new_state)
        self._remember(step + 1, after)
        self._plan_next(after, max(a.cursor - b.cursor for a, b in zip(after, before)))
        batch = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        stats.efficiency = packing.efficiency(batch)
        return batch, stats

    def _pack_group(self, step: int, group: int, state: carry_packer.GroupState, stats: StepStats | None):
        """(rows of `group` at `step`, its state after it); rows only when `stats` is given (else a replay)."""
        names: dict[int, tuple[str, bool]] = {}

        def example(k):
            name, ids, w, cut = self._example(group, k)
            names[k] = (name, cut)
            return ids, w

        done = carry_packer.pack_step(state, example, self.group_rows, self.length, self.max_carry,
                                      occupies=lambda n: packing.segment_length(n, self.special_ids))
        if stats is None:
            return None, done.state
        for k in done.new_draws:
            name, cut = names[k]
            stats.drawn[name] += 1
            stats.truncated += cut
        for k, (ids, _), _ in done.placed:
            stats.per_task[names[k][0]] += 1
            stats.placed_tokens[names[k][0]] += len(ids)
        stats.examples += len(done.placed)
        stats.unplaced += len(done.state.carry)
        rows = np.array([r for _, _, r in done.placed], np.int64)
        return packing.write_rows([ex for _, ex, _ in done.placed], rows, self.group_rows, self.length,
                                  self.special_ids), done.state

    def _plan_next(self, states, draws_per_group: int) -> None:
        """Protect the tasks of the next steps' draws from eviction and, with `read_ahead_steps`, have the read-ahead
        thread read them: per group its carried draws, then the next max(R, 1) x `draws_per_group` (nearest first)."""
        window = max(self.read_ahead_steps, 1) * draws_per_group
        needed = [(g, k) for g, st in zip(self.groups, states) for k in st.carry]
        needed += [(g, st.cursor + i) for i in range(window) for g, st in zip(self.groups, states)]
        self._protected = frozenset(self.task_names[self._draw(g, k)[0]] for g, k in needed)
        RESIDENT.protect(self._owner, self._protected)
        self._end_step_shards(keep=self._protected)
        if self.read_ahead_steps > 0:
            self._read_ahead_ticket += 1
            READ_AHEAD.submit(self._owner, functools.partial(self._read_ahead, self._read_ahead_ticket, needed))

    def _read_ahead(self, ticket: int, needed) -> None:
        """On the read-ahead thread: read the tasks of `needed` draws and tokenize their examples (a newer plan
        stops it)."""
        for g, k in needed:
            if self._read_ahead_ticket != ticket:
                return
            t, u, shots = self._draw(g, k)
            name = self.task_names[t]
            toks = self._step_shards.get((name, g))  # the stream's own first (a dict get: atomic under the GIL)
            if toks is None:
                toks = self._read_task(name)[g]
            if not shots and self.chat is None and isinstance(toks, LazyTaskShard):
                toks.example(min(int(u * len(toks)), len(toks) - 1))

    def carried_tasks(self, step: int) -> collections.Counter:
        """Tasks of the draws this host's groups carry into `step` (drawn, not yet packed)."""
        out = collections.Counter()
        for g, st in zip(self.groups, self._states_before(step)):
            out.update(self.task_names[self._draw(g, k)[0]] for k in st.carry)
        return out

    def state(self) -> dict:
        """What a checkpoint stores to resume bitwise: the group states before the newest steps computed, of every
        group (gathered from all hosts), keyed by step. Several steps, so that a trainer that computes a batch or
        two ahead of the step it saves at still finds the one it needs."""
        newest = sorted(self._states)[-4:]
        local = np.stack([carry_packer.encode_states(self._states[s], self.max_carry) for s in newest])
        every = _gather_groups(local)
        return {"version": STATE_VERSION, "seed": self.seed, "num_groups": self.num_groups, "max_carry": self.max_carry,
                "steps": {str(s): every[i].tolist() for i, s in enumerate(newest)}}

    def restore(self, state: dict | None, step: int) -> bool:
        """Continue from a checkpoint's `state()` at `step`; returns whether it held that step (else later batches
        are replayed from the nearest known step: the same batches, computed more slowly)."""
        ok = (bool(state) and state.get("version") == STATE_VERSION and state.get("seed") == self.seed
              and state.get("num_groups") == self.num_groups and state.get("max_carry") == self.max_carry
              and str(step) in state.get("steps", {}))
        if ok:
            every = carry_packer.decode_states(state["steps"][str(step)])
            self._states[int(step)] = tuple(every[g] for g in self.groups)
        return ok

    def get_batch(self, step: int) -> dict[str, np.ndarray]:
        """This host's [batch_size // num_shards, length] batch for `step` (the batch contract)."""
        return self.get_batch_with_stats(step)[0]


@gin.configurable
def get_train_stream(mixture_or_task_name: str = gin.REQUIRED, task_feature_lengths=2048,
                     batch_size: int = gin.REQUIRED, seed: int = 0, shard_index: int = 0, num_shards: int = 1,
                     split: str = "train", metaicl: MetaICLConfig | None = None,
                     recipe: MixtureRecipe | None = None, cache_dir: str | None = None,
                     use_cached: bool = False, packing_group_rows: int = 1,
                     use_chat_template: bool = False, tokenizer_dir: str | None = None,
                     initial_checkpoint_path: str | None = None, read_ahead_steps: int = 2) -> TrainStream:
    """The one training stream of every run file (gin/runs/train.gin: `train.stream_factory = @get_train_stream`).

    `mixture_or_task_name` decides the data: a registered task or mixture, or an OPT-IML Bench mixture registered
    on demand from gin/bench/opt_iml_bench.gin's data macros (`optiml_jax.data.mixture_names`).

    `batch_size` is global; this host gets `batch_size // num_shards` rows of `sequence_length(task_feature_lengths)`.
    `packing_group_rows`: rows packed together from one data shard (see the module docstring); the number of
    hosts must divide `batch_size / packing_group_rows`, and the global batch does not depend on that number.
    `metaicl`/`recipe` default to the gin-configured `MetaICLConfig()` / `MixtureRecipe()`. `use_cached` (gin:
    `%USE_CACHED_TASKS`) reads every task from its `seqio.cache_tasks_main` cache. `use_chat_template` (gin:
    `%USE_CHAT_TEMPLATE`) renders every example through the tokenizer's chat template, loss on the assistant's
    tokens (`optiml_jax.data.chat_examples`).
    `tokenizer_dir` / `initial_checkpoint_path` (gin: `%TOKENIZER_DIR`, `%INITIAL_CHECKPOINT_PATH`) name the run's
    tokenizer: the library's tasks are read in its ids, a user's task in other ids is an error
    (`mixture_names.match_run_tokenizer`). Neither set: every task in the vocabulary it was registered with.
    `read_ahead_steps`: the trainer's steps whose draws a background thread reads ahead (0: off; batches unchanged).
    """
    ensure_registered(mixture_or_task_name, tokenizer=run_tokenizer(tokenizer_dir, initial_checkpoint_path),
                      match_tokenizer=True)
    return TrainStream(mixture_or_task_name, task_feature_lengths, batch_size, seed, shard_index, num_shards,
                       split=split, metaicl=metaicl, recipe=recipe, cache_dir=cache_dir, use_cached=use_cached,
                       packing_group_rows=packing_group_rows, use_chat_template=use_chat_template,
                       read_ahead_steps=read_ahead_steps)


def _gather_groups(local: np.ndarray) -> np.ndarray:
    """[steps, groups of this host, ...] -> [steps, every group, ...] (hosts hold consecutive groups, in order)."""
    import jax

    if jax.process_count() == 1:
        return local
    from jax.experimental import multihost_utils

    every = np.asarray(multihost_utils.process_allgather(local))  # [hosts, steps, groups per host, ...]
    return np.concatenate(list(every), axis=1)
