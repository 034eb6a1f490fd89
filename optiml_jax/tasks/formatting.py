"""Instruction formatting (paper section 2.4): instruction + output, delimiters, and the demonstrations module:
which demonstrations (`draw_demonstrations`), where they go (`layout`), and how many fit (`fit_demonstrations`),
for training's MetaICL examples and every evaluation path alike.

A formatted example is a list of `Piece`s (text, is_label). Tokenization (see `tokenization.py`) encodes each
piece separately and concatenates, so the label tokens are exactly `encode(" " + target)` plus `</s>`:
this is metaseq's fine-tuning format (`encode(src + " " + tgt) + [eos]`, loss on tgt only) with the two
halves encoded apart, which makes the label/non-label boundary exact (for GPT-2-style byte-level BPE the
two agree whenever the source does not end in whitespace, since the space attaches to the next word).

Layout rules:
- zero-shot, task-level (NIv2, Reasoning): `instruction + "\\n\\n" + input`; instance-level and keyword
  prompts: `input` (with `instruction + "\\n\\n"` in front when a reader gives one).
- if the source does not end with ":", a delimiter from `DELIMITERS` is appended; it is drawn per example
  with a seeded RNG keyed by (format seed, task name, example id), so it is fixed for an example across
  epochs and hosts but varies across examples (the paper's anti-overfitting device).
- k-shot: task-level puts the demonstrations between the definition and the input; instance-level puts
  them before the example (each demonstration carries its own instruction, if any). Each demonstration is
  `source + delimiter + " " + target`; the prompt's delimiter is reused for all of them; blocks are joined
  by `separator` (MetaICL's three newlines by default).
- full-sequence-loss tasks (pre-training text, dialogue): no source, the whole text is the label.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Callable, Sequence, TypeVar

import numpy as np

from optiml_jax.tasks.metadata import TaskInfo

# Paper footnote 5; the last item is printed "\output:" in the paper, read here as "\noutput:".
DELIMITERS = ("\nAnswer:", " Answer:", "\nA:", " A:", "\nOutput:", " Output:", "\nanswer:", "\noutput:")
DEFAULT_SEPARATOR = "\n\n\n"
INSTRUCTION_INPUT_JOINER = "\n\n"
LOSS_VARIANTS = ("target", "all_targets", "suffix")
REQUIRED_KEYS = ("instruction", "input", "target")


class BrokenExampleError(ValueError):
    """A raw example that cannot be formatted; the message names the task and the example."""


@dataclasses.dataclass(frozen=True)
class Piece:
    text: str
    is_label: bool


def check_example(task: TaskInfo, example: dict, where: str = "") -> None:
    """Raises `BrokenExampleError` naming the task and example for missing fields or an empty target."""
    ex_id = example.get("id", "<no id>") if isinstance(example, dict) else "<not a dict>"
    prefix = f"task {task.name!r}, example {ex_id!r}{where}"
    if not isinstance(example, dict):
        raise BrokenExampleError(f"{prefix}: raw example must be a dict, got {type(example).__name__}")
    missing = [k for k in REQUIRED_KEYS if not isinstance(example.get(k), str)]
    if missing:
        raise BrokenExampleError(f"{prefix}: missing or non-string field(s) {missing}")
    if not example["target"].strip():
        raise BrokenExampleError(f"{prefix}: empty target")
    if not task.full_sequence_loss and not (example["input"].strip() or example["instruction"].strip()):
        raise BrokenExampleError(f"{prefix}: empty instruction and input")


def draw_delimiter(task_name: str, example_id: str, seed: int = 0) -> str:
    """The delimiter of one example: a pure function of (seed, task, example id)."""
    digest = hashlib.blake2b(f"{seed}\x00{task_name}\x00{example_id}".encode(), digest_size=8).digest()
    return DELIMITERS[int.from_bytes(digest, "little") % len(DELIMITERS)]


def with_delimiter(text: str, delimiter: str) -> str:
    """Appends `delimiter` unless the text already ends with ":" (trailing spaces ignored)."""
    return text if text.rstrip().endswith(":") else text + delimiter


def _instance_source(example: dict) -> str:
    instruction, text = example["instruction"].strip(), example["input"]
    return f"{instruction}{INSTRUCTION_INPUT_JOINER}{text}" if instruction else text


def _label(target: str) -> str:
    return " " + target


def layout(task: TaskInfo, example: dict, demonstrations: Sequence[dict] = (), *, delimiter: str,
           separator: str = DEFAULT_SEPARATOR, loss: str = "target") -> list[Piece]:
    """Pieces of `example` preceded by `demonstrations`, placed by the task's instruction type.

    `loss` chooses which pieces are labels (MetaICL ablation, paper 4.8):
      "target": only the example's own target (the paper's standard loss);
      "all_targets": the targets of the demonstrations and of the example;
      "suffix": everything from the first demonstration's target to the end (the paper's "suffix loss":
        the first demonstration's label plus the full sequences of all later examples).
    Without demonstrations all three are the standard label loss.
    """
    if loss not in LOSS_VARIANTS:
        raise ValueError(f"unknown loss variant {loss!r}; expected one of {LOSS_VARIANTS}")
    if task.full_sequence_loss:
        text = example["target"] if not example["input"] else f"{example['input']}\n{example['target']}"
        return [Piece(text, True)]
    pieces: list[Piece] = []
    demo_label = loss in ("all_targets", "suffix")
    task_level = task.instruction_type == "task" and example["instruction"].strip()
    prefix = ""
    if task_level:
        prefix = example["instruction"].strip() + (separator if demonstrations else INSTRUCTION_INPUT_JOINER)
    for demo in demonstrations:
        src = demo["input"] if task_level else _instance_source(demo)
        in_suffix = loss == "suffix" and any(p.is_label for p in pieces)
        pieces.append(Piece(prefix + with_delimiter(src, delimiter), in_suffix))
        pieces.append(Piece(_label(demo["target"]), demo_label))
        prefix = separator
    src = example["input"] if task_level else _instance_source(example)
    in_suffix = loss == "suffix" and any(p.is_label for p in pieces)
    pieces.append(Piece(prefix + with_delimiter(src, delimiter), in_suffix))
    pieces.append(Piece(_label(example["target"]), True))
    return pieces


def source_text(pieces: Sequence[Piece]) -> str:
    """Everything before the final label piece (the prompt an evaluator feeds the model)."""
    return "".join(p.text for p in pieces[:-1])


Built = TypeVar("Built")


def draw_demonstrations(rng, candidates, k: int) -> list:
    """k of `candidates` (a count n for range(n), or a sequence) drawn without replacement by `rng` (a numpy
    Generator), in draw order; fewer when there are fewer candidates. The caller's rng says what the draw is a
    function of: training's per-example stream rng, an evaluation's (seed, task, example) key."""
    n = candidates if isinstance(candidates, (int, np.integer)) else len(candidates)
    if k <= 0 or n == 0:
        return []
    return list(rng.choice(candidates, size=min(k, n), replace=False))


def fit_demonstrations(build: Callable[[list], Built], demonstrations: Sequence, fits: Callable[[Built], bool]) -> Built:
    """`build(demos)` with as many of `demonstrations` as fit: the last one is dropped while `fits` says no. Every
    k-shot path uses it (training's MetaICL examples in text, tokens and chat turns; evaluation's suites, chat
    prompts and SeqIO k-shot prompts), so all drop the same demonstrations. With none left, the 0-shot result is
    returned as built, and the caller decides what a still-too-long prompt becomes (left truncation, the model's cut).
    """
    demos = list(demonstrations)
    while True:
        built = build(demos)
        if not demos or fits(built):
            return built
        demos.pop()


def format_few_shot(task: TaskInfo, example: dict, demonstrations: Sequence[dict] = (), k: int | None = None,
                    max_source_tokens: int | None = None, *, count_tokens: Callable[[str], int] | None = None,
                    truncate_left: Callable[[str, int], str] | None = None, delimiter: str | None = None,
                    separator: str = DEFAULT_SEPARATOR, seed: int = 0) -> tuple[str, str]:
    """(source text, target text) of a k-shot prompt, for evaluation (and the same layout as training).

    The first `k` of `demonstrations` are used (all when k is None); while the source is longer than
    `max_source_tokens` (measured by `count_tokens`), the last demonstration is dropped. If the 0-shot source
    is still too long it is cut on the left by `truncate_left(text, max_tokens)` (paper 3.2). The target text
    is the raw target: score/train on `encode(" " + target) + [eos]` (see `tokenization.encode_target`).
    `delimiter=None` draws the example's delimiter exactly as training does.
    """
    check_example(task, example)
    demos = list(demonstrations if k is None else demonstrations[:k])
    for i, d in enumerate(demos):
        check_example(task, d, where=f" (demonstration {i})")
    delim = delimiter if delimiter is not None else draw_delimiter(task.name, example.get("id", ""), seed)
    fits = lambda src: max_source_tokens is None or count_tokens is None or count_tokens(src) <= max_source_tokens  # noqa: E731
    src = fit_demonstrations(lambda ds: source_text(layout(task, example, ds, delimiter=delim, separator=separator)),
                             demos, fits)
    if fits(src):
        return src, example["target"]
    if truncate_left is None:
        raise ValueError(f"task {task.name!r}, example {example.get('id')!r}: source exceeds "
                         f"{max_source_tokens} tokens and no truncate_left was given")
    return truncate_left(src, max_source_tokens), example["target"]
