"""How each collection of the mini-benchmark phrases a task (paper section 2.2), producing raw examples.

Imitated styles, one per OPT-IML Bench collection:
- niv2: task-level definition + "Input: ..." (+ "Options: a | b"; demonstrations go between definition and input);
- reasoning: task-level definition asking for step-by-step reasoning; target = rationale + answer;
- promptsource: instance-level templates, options listed as "Choices: a ||| b";
- flan: instance-level templates, options as "OPTIONS:\n- a\n- b";
- crossfit / exmix: a hand-written keyword sentence, at instance level;
- t5: a "prefix: input" keyword prompt;
- unifiedskg: linearised structure ("table: ... ; question: ...:"), ending with ":" so no delimiter is drawn.
A raw example is the dict of docs/ARCHITECTURE.md; formatting (delimiters, demonstrations) is done later
by `optiml_jax.data`.
"""

from __future__ import annotations

import random
from typing import Callable

from optiml_jax.tasks.mini_bench.families import Family, Item

STYLE_INSTRUCTION_TYPES = {"niv2": "task", "reasoning": "task", "promptsource": "instance", "flan": "instance",
                           "crossfit": "keyword", "exmix": "keyword", "t5": "keyword", "unifiedskg": "keyword"}


def _linearize(item: Item) -> str:
    if not item.table:
        return f"text: {item.x}"
    header, *rows = item.table
    cells = " ".join(f"row {i + 1} : " + " | ".join(r) for i, r in enumerate(rows))
    return f"table: col : {' | '.join(header)} {cells}"


def _niv2(family: Family, item: Item, rng: random.Random) -> tuple[str, str, str]:
    options = "\nOptions: " + " | ".join(item.options) if item.options else ""
    return family.definition, f"Input: {item.x}{options}", item.answer


def _reasoning(family: Family, item: Item, rng: random.Random) -> tuple[str, str, str]:
    if not item.rationale:
        raise ValueError(f"family {family.name!r} has no rationale: it cannot be a reasoning task")
    instruction = family.definition + " Answer the following question by reasoning step by step."
    return instruction, f"Q: {item.x}", f"{item.rationale} So the answer is {item.answer}."


def _templated(options_block: Callable[[tuple[str, ...]], str]):
    """An instance-level style: one of the family's templates, then the options as the collection lists them."""

    def style(family: Family, item: Item, rng: random.Random) -> tuple[str, str, str]:
        text = rng.choice(family.templates).format(x=item.x)
        return "", text + (options_block(item.options) if item.options else ""), item.answer

    return style


def _unifiedskg(family: Family, item: Item, rng: random.Random) -> tuple[str, str, str]:
    question = item.x if item.table and family.name == "table_qa" else family.keyword
    return "", f"{_linearize(item)} ; question: {question} ; answer:", item.answer


# collection -> (family, item, rng) -> (instruction, input, target)
_STYLES: dict[str, Callable[[Family, Item, random.Random], tuple[str, str, str]]] = {
    "niv2": _niv2,
    "reasoning": _reasoning,
    "promptsource": _templated(lambda options: "\nChoices: " + " ||| ".join(options)),
    "flan": _templated(lambda options: "\nOPTIONS:\n" + "\n".join(f"- {o}" for o in options)),
    "crossfit": lambda family, item, rng: ("", f"{family.keyword}\n{item.x}", item.answer),
    "exmix": lambda family, item, rng: ("", f"{item.x}\n\n{family.keyword}", item.answer),
    "t5": lambda family, item, rng: ("", f"{family.prefix}: {item.x}", item.answer),
    "unifiedskg": _unifiedskg,
}


def render(collection: str, family: Family, item: Item, rng: random.Random) -> dict:
    """Raw example (instruction, input, target, references, options) of `item` in `collection`'s style."""
    if collection not in _STYLES:
        raise ValueError(f"unknown mini-benchmark collection {collection!r}")
    instruction, text, target = _STYLES[collection](family, item, rng)
    return {"instruction": instruction, "input": text, "target": target, "references": [target],
            "options": list(item.options)}
