"""Task families of the mini-benchmark: what a task asks, independent of how a collection phrases it.

A family draws one item (`Item`: the input text, the answer, the answer options for classification, and a
step-by-step rationale where one makes sense) and carries the wording each instruction style needs: a
task-level definition (NIv2/Reasoning style), instance-level templates (PromptSource/FLAN style), a
hand-written keyword sentence (CrossFit/ExMix style) and a T5-style prefix, read from `families.json`.
`styles.py` combines them.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import random
from typing import Callable

from optiml_jax.tasks.mini_bench import world as W


@dataclasses.dataclass(frozen=True)
class Item:
    x: str
    answer: str
    options: tuple[str, ...] = ()
    rationale: str = ""
    table: tuple[tuple[str, ...], ...] = ()  # header row first; for structured (UnifiedSKG-style) renderings


@dataclasses.dataclass(frozen=True)
class Family:
    name: str
    category: str
    sample: Callable[[random.Random, W.World], Item]
    definition: str  # task-level instruction
    templates: tuple[str, ...]  # instance-level; "{x}" is the item's input text
    keyword: str  # one hand-written sentence (keyword-prompt collections)
    prefix: str  # T5-style task prefix

    @property
    def is_classification(self) -> bool:
        return self.category in CLASSIFICATION_CATEGORIES


CLASSIFICATION_CATEGORIES = {"sentiment_analysis", "word_classification", "fact_verification", "comparison",
                             "cause_effect_classification"}


def _letters(rng, lo=3, hi=7):
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(lo, hi)))


def _copy(rng, w):
    s = " ".join(_letters(rng) for _ in range(rng.randint(1, 3)))
    return Item(s, s)


def _reverse(rng, w):
    s = _letters(rng, 3, 8)
    return Item(s, s[::-1])


def _uppercase(rng, w):
    s = " ".join(_letters(rng) for _ in range(rng.randint(1, 3)))
    return Item(s, s.upper())


def _arith(op):
    def sample(rng, w):
        a, b = rng.randint(0, 20 if op == "*" else 99), rng.randint(0, 12 if op == "*" else 99)
        if op == "-" and b > a:
            a, b = b, a
        r = {"+": a + b, "-": a - b, "*": a * b}[op]
        word = {"+": "plus", "-": "minus", "*": "times"}[op]
        rationale = f"We compute {a} {op} {b}. {a} {word} {b} equals {r}."
        return Item(f"What is {a} {op} {b}?", str(r), rationale=rationale)
    return sample


def _sentiment(rng, w):
    label = rng.choice(("positive", "negative"))
    adjs = W.POSITIVE_ADJECTIVES if label == "positive" else W.NEGATIVE_ADJECTIVES
    subj = rng.choice(W.REVIEW_SUBJECTS)
    a1, a2 = rng.sample(adjs, 2)
    pattern = rng.choice(("{S} was {a}.", "I think {s} is {a} and {b}.", "Honestly, {s} was {a}.",
                          "{S} felt {a}, really {b}."))
    text = pattern.format(S=subj.capitalize(), s=subj, a=a1, b=a2)
    return Item(text, label, options=("negative", "positive"))


def _word_category(rng, w):
    cat = rng.choice(sorted(W.WORD_CATEGORIES))
    word = rng.choice(W.WORD_CATEGORIES[cat])
    return Item(word, cat, options=tuple(sorted(W.WORD_CATEGORIES)))


def _sort_numbers(rng, w):
    nums = [rng.randint(0, 99) for _ in range(rng.randint(3, 6))]
    return Item(", ".join(map(str, nums)), ", ".join(map(str, sorted(nums))))


def _sort_letters(rng, w):
    s = _letters(rng, 4, 7)
    return Item(s, "".join(sorted(s)))


def _count_words(rng, w):
    words = [_letters(rng, 2, 5) for _ in range(rng.randint(1, 9))]
    n = len(words)
    rationale = " ".join(f"{i + 1}: {wd}." for i, wd in enumerate(words)) + f" There are {n} words."
    return Item(" ".join(words), str(n), rationale=rationale)


def _count_letter(rng, w):
    s = "".join(rng.choice("abab" + "cdefg") for _ in range(rng.randint(4, 10)))
    letter = rng.choice("ab")
    return Item(f"How many times does the letter {letter} appear in {s}?", str(s.count(letter)))


def _fact(attr):
    def sample(rng, w):
        p = rng.choice(w.people)
        truth = getattr(p, attr)
        pool = w.towns if attr == "town" else W.ANIMALS
        asked = truth if rng.random() < 0.5 else rng.choice([t for t in pool if t != truth])
        q = f"Does {p.name} live in {asked}?" if attr == "town" else f"Does {p.name} have a {asked} as a pet?"
        return Item(q, "yes" if asked == truth else "no", options=("no", "yes"))
    return sample


def _qa(attr):
    def sample(rng, w):
        p = rng.choice(w.people)
        q = f"Where does {p.name} live?" if attr == "town" else f"What pet does {p.name} have?"
        return Item(q, getattr(p, attr))
    return sample


def _table_qa(rng, w):
    people = rng.sample(w.people, 3)
    p = rng.choice(people)
    table = (("name", "town", "pet"),) + tuple((q.name, q.town, q.pet) for q in people)
    return Item(f"Which town is {p.name} from?", p.town, table=table)


def _antonym(rng, w):
    a, b = rng.choice(W.ANTONYMS)
    if rng.random() < 0.5:
        a, b = b, a
    return Item(a, b)


def _larger(rng, w):
    a, b = rng.sample(range(0, 1000), 2)
    return Item(f"{a} or {b}", str(max(a, b)), options=tuple(sorted((str(a), str(b)))))


def _table_to_text(rng, w):
    p = rng.choice(w.people)
    table = (("name", "town", "pet", "age"), (p.name, p.town, p.pet, str(p.age)))
    return Item(f"{p.name} | {p.town} | {p.pet} | {p.age}",
                f"{p.name} is {p.age} years old, lives in {p.town} and has a {p.pet}.", table=table)


def _text_to_record(rng, w):
    p = rng.choice(w.people)
    return Item(f"{p.name} lives in {p.town} and likes the colour {p.color}.",
                f"name={p.name}; town={p.town}; color={p.color}")


def _cause_effect(rng, w):
    i, j = rng.sample(range(len(W.CAUSE_EFFECT)), 2)
    cause, effect = W.CAUSE_EFFECT[i]
    return Item(cause, effect, options=tuple(sorted((effect, W.CAUSE_EFFECT[j][1]))))


# What each family draws; what it says (definition, templates, keyword, prefix) is data: families.json, in this order.
_SAMPLERS = dict(copy=_copy, reverse=_reverse, uppercase=_uppercase, add=_arith("+"), subtract=_arith("-"),
                 multiply=_arith("*"), sentiment=_sentiment, word_category=_word_category, sort_numbers=_sort_numbers,
                 sort_letters=_sort_letters, count_words=_count_words, count_letter=_count_letter,
                 fact_town=_fact("town"), fact_pet=_fact("pet"), qa_town=_qa("town"), qa_pet=_qa("pet"),
                 table_qa=_table_qa, antonym=_antonym, larger_number=_larger, table_to_text=_table_to_text,
                 text_to_record=_text_to_record, cause_effect=_cause_effect)
WORDING_FILE = pathlib.Path(__file__).with_name("families.json")


def _load_families() -> dict[str, Family]:
    rows = json.loads(WORDING_FILE.read_text(encoding="utf-8"))
    if [r["name"] for r in rows] != list(_SAMPLERS):
        raise ValueError(f"{WORDING_FILE}: families {[r['name'] for r in rows]} != the samplers' {list(_SAMPLERS)}")
    return {r["name"]: Family(sample=_SAMPLERS[r["name"]], **{**r, "templates": tuple(r["templates"])}) for r in rows}


FAMILIES: dict[str, Family] = _load_families()
