"""Registers the embedded mini-benchmark: `mini_bench_<collection>_<family>` tasks and its mixtures.

Mixtures:
- `mini_bench_train`: every task trainable under `SPLIT` (the generalization split), mixed by the paper's
  recipe (`MixtureRecipe`, gin-configurable: EPS, caps, collection proportions, reasoning / pre-training /
  dialogue shares). This is the quickstart's and the tests' default mixture.
- `mini_bench_eval_fully_held_out`, `mini_bench_eval_partially_supervised`, `mini_bench_eval_fully_supervised`:
  the evaluation tasks of each level (equal rates), evaluated on their validation/test splits.
Vocabulary: the shipped BPE in `bpe/` beside this module; model vocab size = `VOCAB_SIZE`. A run in another
tokenizer's ids (a Llama / Qwen2 / Mistral checkpoint's) re-registers the same tasks with `register(vocabulary)`:
the formatted text is unchanged, only the ids change (`optiml_jax.data.mixture_names` decides when).
"""

from __future__ import annotations

import functools
import pathlib

from optiml_jax.tasks import mixtures, registry
from optiml_jax.tasks.metadata import LEVELS
from optiml_jax.tasks.mini_bench import SPLIT, SPLITS, TASKS, generate_task
from optiml_jax.vocabularies import OPTVocabulary

from optiml_jax.tasks.mini_bench.tokenizer import COUNTS_FILE, TOKENIZER_DIR
VOCABULARY = OPTVocabulary(TOKENIZER_DIR)
VOCAB_SIZE = VOCABULARY.vocab_size
TRAIN_MIXTURE = "mini_bench_train"
TASK_NAMES = frozenset(t.name for t in TASKS)
_REGISTERED = {"vocabulary": VOCABULARY}  # the vocabulary the tasks are registered with now


def _split_reader(name: str, split: str):
    return functools.partial(lambda n, s: generate_task(n)[s], name, split)


def registered_vocabulary():
    """The vocabulary the mini-benchmark's tasks are registered with now (`VOCABULARY` unless re-registered)."""
    return _REGISTERED["vocabulary"]


def register(vocabulary=None) -> None:
    """(Re-)register every task and mixture, tokenized with `vocabulary` (default: the shipped BPE)."""
    vocabulary = VOCABULARY if vocabulary is None else vocabulary
    registry.register_generalization_split(SPLIT)
    counts = registry.read_counts_file(COUNTS_FILE)
    for info in TASKS:
        if info.name not in counts:
            raise KeyError(f"{COUNTS_FILE} has no entry for {info.name!r}: run "
                           "`python -m optiml_jax.tasks.mini_bench.tokenizer` to regenerate it")
        registry.register_instruction_task(info, {s: _split_reader(info.name, s) for s in SPLITS}, vocabulary,
                                           counts[info.name], replace=True)
    _REGISTERED["vocabulary"] = vocabulary
    mixtures.register_recipe_mixture(TRAIN_MIXTURE, [t.name for t in SPLIT.trainable(TASKS)])
    for level in LEVELS:
        tasks = [t.name for t, lvl in SPLIT.evaluation_tasks(TASKS) if lvl == level]
        mixtures.register_rate_mixture(f"mini_bench_eval_{level}", {t: 1.0 for t in tasks})


register()
