"""The mini-benchmark's task list, its generalization split, and deterministic split generation.

`TASKS` pairs a collection style with a task family: 60+ tasks, 8 instruction collections (+ pre-training
text and dialogue), 14 categories. Splits are generated from a per-task seed: a pool of distinct items (distinct
records; for chats, distinct pairs of speakers) with distinct normalized inputs (`instance_splits`) is drawn and cut
into test / validation / train, so held-out instances never share an item or an input with training.
"""

from __future__ import annotations

import functools
import random
import zlib
from typing import Callable, Hashable, TypeVar

from optiml_jax.tasks.instance_splits import normalize_text, normalized_input
from optiml_jax.tasks.metadata import GeneralizationSplit, TaskInfo
from optiml_jax.tasks.mini_bench import world as W
from optiml_jax.tasks.mini_bench.families import FAMILIES
from optiml_jax.tasks.mini_bench.styles import STYLE_INSTRUCTION_TYPES, render

T = TypeVar("T")
PREFIX = "mini_bench_"
SPLITS = ("train", "validation", "test")
EVAL_EXAMPLES = 50  # per eval split, fewer when a family's item space is small
_TRAIN_SIZES = (300, 600, 1200, 2400, 5000)

_STYLES_OF_FAMILY = {
    "copy": ("niv2", "t5", "crossfit"),
    "reverse": ("niv2", "promptsource", "t5", "crossfit"),
    "uppercase": ("niv2", "flan"),
    "add": ("niv2", "flan", "t5", "reasoning"),
    "subtract": ("niv2", "promptsource", "reasoning"),
    "multiply": ("niv2", "exmix", "reasoning"),
    "sentiment": ("niv2", "promptsource", "flan", "crossfit", "exmix"),
    "word_category": ("niv2", "promptsource", "flan", "crossfit"),
    "sort_numbers": ("niv2", "t5", "crossfit"),
    "sort_letters": ("niv2", "flan"),
    "count_words": ("niv2", "promptsource", "reasoning"),
    "count_letter": ("niv2", "exmix"),
    "fact_town": ("niv2", "promptsource", "flan"),
    "fact_pet": ("promptsource", "crossfit"),
    "qa_town": ("niv2", "promptsource", "flan"),
    "qa_pet": ("niv2", "flan"),
    "table_qa": ("unifiedskg",),
    "antonym": ("niv2", "promptsource", "flan"),
    "larger_number": ("niv2", "flan", "crossfit"),
    "table_to_text": ("unifiedskg", "niv2"),
    "text_to_record": ("unifiedskg", "exmix"),
    "cause_effect": ("niv2", "promptsource", "flan"),
}


def _info(collection: str, family_name: str) -> TaskInfo:
    fam = FAMILIES[family_name]
    metric = "accuracy" if fam.is_classification else "rouge_l"
    return TaskInfo(name=f"{PREFIX}{collection}_{family_name}", collection=collection, category=fam.category,
                    instruction_type=STYLE_INSTRUCTION_TYPES[collection], metric=metric,
                    source_dataset=f"mini_bench/{family_name}")


TASKS: tuple[TaskInfo, ...] = tuple(_info(c, f) for f, styles in _STYLES_OF_FAMILY.items() for c in styles) + (
    TaskInfo(name=f"{PREFIX}pretraining_world_text", collection="pretraining", category="language_modeling",
             metric="rouge_l", full_sequence_loss=True, source_dataset="mini_bench/world"),
    TaskInfo(name=f"{PREFIX}dialogue_chat", collection="dialogue", category="dialogue_generation",
             metric="rouge_l", full_sequence_loss=True, source_dataset="mini_bench/world"),
)
TASKS_BY_NAME = {t.name: t for t in TASKS}

SPLIT = GeneralizationSplit(
    name="mini_bench_default",
    fully_held_out_categories=frozenset({"word_analogy", "comparison", "cause_effect_classification"}),
    held_out_tasks=frozenset(PREFIX + n for n in (
        "flan_add", "promptsource_sentiment", "flan_qa_pet", "crossfit_sort_numbers", "reasoning_count_words",
        "exmix_count_letter")),
    supervised_eval_tasks=frozenset(PREFIX + n for n in (
        "niv2_reverse", "promptsource_word_category", "flan_qa_town", "t5_copy", "unifiedskg_table_to_text")),
    validation_tasks=frozenset(PREFIX + n for n in ("niv2_antonym", "flan_add", "niv2_reverse")),
)


def _seed(name: str) -> int:
    return zlib.crc32(name.encode("utf-8"))


def _world_text(rng: random.Random, w: W.World) -> tuple[str, dict]:
    people = rng.sample(w.people, rng.randint(2, 4))
    sents = []
    for p in people:
        sents.append(f"{p.name} lives in {p.town}. {p.name} has a {p.pet} and likes the colour {p.color}.")
        if rng.random() < 0.5:
            sents.append(f"{p.name} is {p.age} years old.")
    text = " ".join(sents)
    return normalize_text(text), {"instruction": "", "input": "", "target": text, "references": [], "options": []}


def _dialogue(rng: random.Random, w: W.World) -> tuple[tuple[str, str], dict]:
    a, b = rng.sample(w.people, 2)
    turns = [f"{a.name}: Hi {b.name}, how is life in {b.town}?", f"{b.name}: Good! My {b.pet} is well.",
             f"{a.name}: What is your favourite colour?", f"{b.name}: I like {b.color}."]
    # keyed by the pair: a shorter chat of the same two people is a prefix of the longer one, not a new instance
    return (a.name, b.name), {"instruction": "", "input": "", "target": "\n".join(turns[: rng.randint(2, 4)]),
                              "references": [], "options": []}


def _distinct(draw: Callable[[], tuple[Hashable, T]], want: int) -> list[tuple[Hashable, T]]:
    """Up to `want` draws with distinct keys: a repeated key is drawn again (500 repeats in a row: the task's item
    space is exhausted, and the pool is what was found)."""
    seen: set = set()
    out, misses = [], 0
    while len(out) < want and misses < 500:
        key, value = draw()
        if key in seen:
            misses += 1
            continue
        seen.add(key)
        out.append((key, value))
        misses = 0
    return out


@functools.lru_cache(maxsize=None)
def generate_task(name: str) -> dict[str, tuple[dict, ...]]:
    """All splits of a mini-benchmark task: {split: (raw example, ...)}; deterministic in `name`."""
    if name not in TASKS_BY_NAME:
        raise KeyError(f"unknown mini-benchmark task {name!r}")
    info, w = TASKS_BY_NAME[name], W.build_world()
    rng = random.Random(_seed(name))
    want_train = _TRAIN_SIZES[_seed(name + "/size") % len(_TRAIN_SIZES)]
    want = want_train + 2 * EVAL_EXAMPLES
    if info.collection in ("pretraining", "dialogue"):
        make = _world_text if info.collection == "pretraining" else _dialogue
        pool = [ex for _, ex in _distinct(lambda: make(rng, w), want)]
    else:
        family = FAMILIES[info.source_dataset.split("/")[1]]
        def draw():
            item = family.sample(rng, w)
            return (item.x, item.answer, item.options), item

        items = [it for _, it in _distinct(draw, want)]
        # items are rendered after all are drawn (the rng order the shipped vocabulary was trained on); two distinct
        # items that rendered to one normalized input would be one instance, so a later one is left out
        pool, inputs = [], set()
        for ex in (render(info.collection, family, it, rng) for it in items):
            if normalized_input(ex) not in inputs:
                inputs.add(normalized_input(ex))
                pool.append(ex)
    n_eval = min(EVAL_EXAMPLES, len(pool) // 5)
    cut = {"test": pool[:n_eval], "validation": pool[n_eval:2 * n_eval], "train": pool[2 * n_eval:]}
    return {s: tuple(dict(ex, id=f"{name}-{s}-{i}") for i, ex in enumerate(cut[s])) for s in SPLITS}


def example_counts() -> dict[str, dict[str, int]]:
    """{task: {split: count}} computed by generating every task (what the counts file stores)."""
    return {t.name: {s: len(v) for s, v in generate_task(t.name).items()} for t in TASKS}
