"""k-shot prompts for a SeqIO task evaluated through `seqio.Evaluator` (the eval CLI's `SEQIO_SHOTS`).

`task_kshot_prompts(task, k, ...)` draws k demonstrations once per task (seeded) from the first `pool` examples of
its `demonstration_split`, read through the task's own `get_dataset` (so every preprocessor a user added ran), and
returns a `KShotPrompts`: `prompts(index, zero_shot_prompt, room)` gives the k-shot prompt of evaluated example
`index`. Two layouts, the same rule as the training stream's MetaICL examples (`data.stream`):

- **text** (the task's dataset carries the raw text fields `instruction`/`input`/`target`/`id`, as every task
  registered with `register_instruction_task` does): the paper's layout (`tasks.formatting.layout`):
  **task-level** placement where the task gives a definition (instruction type "task" and a non-empty
  instruction: the definition once, then the demonstrations, then the input), instance-level otherwise (each
  demonstration with its own instruction, before the example); the example's delimiter is drawn exactly as its
  zero-shot `inputs` were, so with no demonstrations the prompt is token for token the zero-shot one.
- **tokens** (a plain SeqIO task, tokenized by its own preprocessors, no raw text): instance-level, each
  demonstration its `inputs` then `targets` tokens (no eos), joined by the separator's tokens, between the
  leading bos (OPT: `</s>`; nothing for a family without one) and the example's prompt.

Both drop demonstrations from the end until the prompt fits `room` (the definition and the example are never the
part that is cut); a zero-shot prompt that alone is too long is left-truncated by the adapters as before.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from optiml_jax.tasks import registry
from optiml_jax.tasks.formatting import (DEFAULT_SEPARATOR, draw_delimiter, draw_demonstrations, fit_demonstrations,
                                         layout, source_text)
from optiml_jax.tasks.metadata import TaskInfo
from optiml_jax.vocabularies.special_ids import SpecialIds, special_ids_of


class KShotConfigError(ValueError):
    """The demonstrations a k-shot evaluation needs cannot be drawn; the message names the task and split."""


def _decode_raw(example: dict) -> dict[str, str]:
    return {k: example[k].decode() if isinstance(example[k], bytes) else str(example[k])
            for k in registry.RAW_TEXT_FEATURES}


def _has_raw_text(dataset) -> bool:
    return all(k in dataset.element_spec for k in registry.RAW_TEXT_FEATURES)


@dataclasses.dataclass(frozen=True)
class KShotPrompts:
    """The k-shot prompts of one task. `layout` is "text" or "tokens" (see the module docstring);
    `placement` is "task" or "instance" (what the paper calls task-level / instance-level)."""

    task_name: str
    layout: str
    placement: str
    demonstrations: tuple  # raw example dicts ("text") or token-id tuples ("tokens"), in prompt order
    separator_ids: tuple[int, ...] = ()
    info: TaskInfo | None = None
    vocabulary: Any = None
    format_seed: int = 0
    evaluated_raw: dict[int, dict] | None = None  # "text": the raw fields of each evaluated example, by index
    special_ids: SpecialIds | None = None  # the task vocabulary's (the prompt's leading bos, if any)

    def __call__(self, index: int, prompt: Sequence[int], room: int) -> list[int]:
        """The k-shot prompt (leading bos included, if the family has one) of evaluated example `index`, whose zero-shot prompt is
        `prompt`; demonstrations are dropped from the end until it is at most `room` tokens."""
        return fit_demonstrations(lambda ds: self._build(index, list(prompt), ds), self.demonstrations,
                                  lambda out: len(out) <= room)

    def _build(self, index: int, prompt: list[int], demos: list) -> list[int]:
        prefix = self.special_ids.prompt_prefix
        if self.layout == "tokens":
            middle = [t for d in demos for t in list(d) + list(self.separator_ids)]
            return prompt[:len(prefix)] + middle + prompt[len(prefix):]
        example = self.evaluated_raw[int(index)]
        delimiter = draw_delimiter(self.task_name, example["id"], self.format_seed)
        pieces = layout(self.info, example, demos, delimiter=delimiter, separator=DEFAULT_SEPARATOR)
        return prefix + [int(t) for t in self.vocabulary.encode(source_text(pieces))]


def task_kshot_prompts(task, shots: int, *, split: str = "train", seed: int = 0, pool: int = 256,
                       evaluated=None) -> KShotPrompts | None:
    """The k-shot prompts of `task` (None for `shots <= 0`). `evaluated`: the task dataset the evaluator scores
    (seqio's `Evaluator.cached_task_datasets[task.name]`), needed for the text layout's raw fields."""
    if shots <= 0:
        return None
    if split not in task.splits:
        raise KShotConfigError(f"task {task.name!r}: {shots}-shot evaluation takes demonstrations from its "
                               f"{split!r} split, which it does not have (splits: {list(task.splits)})")
    ds = task.get_dataset(sequence_length=None, split=split, shuffle=False, num_epochs=1).take(pool)
    view = registry.get_task(task.name)
    text = _has_raw_text(ds) and evaluated is not None and _has_raw_text(evaluated)
    rows = list(ds.as_numpy_iterator())
    if len(rows) < shots:
        raise KShotConfigError(f"task {task.name!r}: {shots}-shot evaluation needs {shots} {split!r} examples, it "
                               f"has {len(rows)}")
    picked = [rows[int(i)] for i in draw_demonstrations(np.random.default_rng([seed, shots]), len(rows), shots)]
    vocabulary = task.output_features["targets"].vocabulary
    ids = special_ids_of(vocabulary)
    if not text:
        # eos and pad ids are not demonstration text. (The dataset is read without a sequence length, so SeqIO's
        # 0-padding is absent; 0 is a real token in Llama's vocabulary and is kept.)
        drop = set(ids.eos) | {ids.pad}
        demos = tuple(tuple(int(t) for f in ("inputs", "targets") if f in ex for t in np.asarray(ex[f]).tolist()
                       if t not in drop) for ex in picked)
        return KShotPrompts(task.name, "tokens", "instance", demos,
                            separator_ids=tuple(int(t) for t in vocabulary.encode(DEFAULT_SEPARATOR)),
                            special_ids=ids)
    info = view.info
    evaluated_raw = {i: _decode_raw(ex) for i, ex in enumerate(evaluated.as_numpy_iterator())}
    first = next(iter(evaluated_raw.values()), None)
    task_level = info.instruction_type == "task" and first is not None and first["instruction"].strip()
    return KShotPrompts(task.name, "text", "task" if task_level else "instance",
                        tuple(_decode_raw(ex) for ex in picked), info=info, vocabulary=vocabulary,
                        format_seed=view.raw.format_seed if view.raw else 0, evaluated_raw=evaluated_raw,
                        special_ids=ids)
