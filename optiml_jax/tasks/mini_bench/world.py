"""The generated world the mini-benchmark's tasks talk about: people, towns, pets, a small lexicon.

Everything is produced by code from a fixed seed (no downloaded or copied data): made-up names are built
from syllables, and the few English word lists below are hand-written for this project. Facts are fixed
for the whole mini-benchmark, so a model can learn them from the pre-training text and be asked about them
in question-answering and yes/no tasks.
"""

from __future__ import annotations

import dataclasses
import functools
import random

_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z")
_VOWELS = ("a", "e", "i", "o", "u")
_CODAS = ("", "", "n", "r", "l", "m", "k")

ANIMALS = ("cat", "dog", "horse", "rabbit", "goat", "parrot", "tiger", "mouse", "sheep", "duck", "fox", "bear")
COLORS = ("red", "blue", "green", "yellow", "black", "white", "purple", "orange", "brown", "pink")
FOODS = ("bread", "apple", "cheese", "rice", "soup", "banana", "carrot", "pasta", "cake", "egg")
TOOLS = ("hammer", "saw", "drill", "wrench", "shovel", "ladder", "needle", "rope", "knife", "brush")
VEHICLES = ("car", "bus", "train", "boat", "bicycle", "truck", "plane", "tram", "scooter", "ship")
WORD_CATEGORIES = {"animal": ANIMALS, "color": COLORS, "food": FOODS, "tool": TOOLS, "vehicle": VEHICLES}

ANTONYMS = (
    ("hot", "cold"), ("big", "small"), ("fast", "slow"), ("happy", "sad"), ("light", "dark"),
    ("open", "closed"), ("early", "late"), ("full", "empty"), ("hard", "soft"), ("high", "low"),
    ("long", "short"), ("old", "new"), ("rich", "poor"), ("strong", "weak"), ("wet", "dry"),
    ("loud", "quiet"), ("clean", "dirty"), ("thick", "thin"), ("near", "far"), ("up", "down"),
    ("win", "lose"), ("push", "pull"), ("buy", "sell"), ("first", "last"), ("inside", "outside"),
    ("day", "night"), ("true", "false"), ("young", "aged"), ("heavy", "slight"), ("sweet", "sour"),
)

POSITIVE_ADJECTIVES = ("wonderful", "great", "excellent", "lovely", "delightful", "fantastic", "superb", "pleasant")
NEGATIVE_ADJECTIVES = ("awful", "terrible", "boring", "dreadful", "poor", "horrible", "disappointing", "dull")
REVIEW_SUBJECTS = ("the movie", "this phone", "the meal", "our hotel", "the concert", "this book", "the service",
                   "the game", "this chair", "the trip")

CAUSE_EFFECT = (
    ("It started to rain.", "The streets got wet."),
    ("The glass fell off the table.", "The glass broke."),
    ("She forgot to water the plant.", "The plant dried out."),
    ("He ran all the way home.", "He was out of breath."),
    ("The sun went down.", "It got dark outside."),
    ("I left the ice cream in the sun.", "The ice cream melted."),
    ("The baby was hungry.", "The baby cried."),
    ("We turned on the heater.", "The room got warm."),
    ("The dog saw a cat.", "The dog barked."),
    ("He studied every night.", "He passed the exam."),
    ("The battery was empty.", "The phone turned off."),
    ("She dropped the ball.", "The ball bounced."),
    ("The wind blew hard.", "The door slammed shut."),
    ("I ate too much cake.", "My stomach hurt."),
    ("The river flooded.", "The farm was under water."),
    ("They lost the map.", "They got lost."),
    ("The alarm rang.", "Everyone woke up."),
    ("He broke his leg.", "He walked with crutches."),
    ("The bread was left out for a week.", "The bread got moldy."),
    ("She practiced the piano daily.", "She played very well."),
)


def make_word(rng: random.Random, syllables: int) -> str:
    return "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(syllables))


@dataclasses.dataclass(frozen=True)
class Person:
    """One person of the world. No two people share (town, pet, age): two table rows that differ only in the name
    would make near-copies of one instance (a table-to-text row in training and its twin held out)."""

    name: str
    town: str
    pet: str
    color: str
    age: int


@dataclasses.dataclass(frozen=True)
class World:
    people: tuple[Person, ...]
    towns: tuple[str, ...]


@functools.lru_cache(maxsize=None)
def build_world(seed: int = 20221222, num_people: int = 150, num_towns: int = 12) -> World:
    """The mini-benchmark's fixed world: unique made-up names, each person with a town, a pet, a colour, an age."""
    rng = random.Random(seed)
    towns: list[str] = []
    while len(towns) < num_towns:
        w = make_word(rng, 2).capitalize()
        if w not in towns:
            towns.append(w)
    names: list[str] = []
    while len(names) < num_people:
        w = make_word(rng, rng.choice((2, 2, 3))).capitalize()
        if w not in names and w not in towns:
            names.append(w)
    people, rows = [], set()
    for n in names:
        p = Person(name=n, town=rng.choice(towns), pet=rng.choice(ANIMALS), color=rng.choice(COLORS),
                   age=rng.randint(8, 80))
        while (p.town, p.pet, p.age) in rows:  # the row without its name is unique (see `Person`)
            p = dataclasses.replace(p, age=8 + (p.age - 8 + 1) % 73)
        rows.add((p.town, p.pet, p.age))
        people.append(p)
    return World(people=tuple(people), towns=tuple(towns))
