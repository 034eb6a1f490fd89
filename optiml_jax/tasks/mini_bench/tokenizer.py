"""The mini-benchmark's own small BPE vocabulary (no download): trained on the generated text.

`python -m optiml_jax.tasks.mini_bench.tokenizer` regenerates `optiml_jax/tasks/mini_bench/bpe/` and the
counts file `optiml_jax/tasks/mini_bench/counts.json`; both are deterministic functions of the generator code, and a
test checks that regeneration reproduces the shipped files byte for byte.
"""

from __future__ import annotations

import json
import pathlib
import sys

from optiml_jax.tasks.formatting import DELIMITERS, DEFAULT_SEPARATOR
from optiml_jax.tasks.mini_bench.task_list import SPLITS, TASKS, example_counts, generate_task

VOCAB_SIZE = 2048
HERE = pathlib.Path(__file__).resolve().parent
TOKENIZER_DIR = HERE / "bpe"  # vocab.json + merges.txt, shipped as package data
COUNTS_FILE = HERE / "counts.json"


def training_texts():
    """Every instruction, input and target of every split, plus the delimiters and separators."""
    yield from DELIMITERS
    yield DEFAULT_SEPARATOR
    for task in TASKS:
        for split in SPLITS:
            for ex in generate_task(task.name)[split]:
                yield ex["instruction"] + "\n\n" + ex["input"]
                yield " " + ex["target"]


def build_tokenizer(out_dir: str | pathlib.Path = TOKENIZER_DIR) -> pathlib.Path:
    from optiml_jax.vocabularies import train_opt_style_bpe

    return train_opt_style_bpe(training_texts(), VOCAB_SIZE, out_dir)


def write_counts(path: str | pathlib.Path = COUNTS_FILE) -> pathlib.Path:
    path = pathlib.Path(path)
    path.write_text(json.dumps(example_counts(), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return path


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else None
    print(build_tokenizer(pathlib.Path(out) / "mini_bench_tokenizer" if out else TOKENIZER_DIR))
    print(write_counts(pathlib.Path(out) / "mini_bench_counts.json" if out else COUNTS_FILE))
