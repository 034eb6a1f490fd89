"""Which tokenizer evaluates a checkpoint: the one named, the one saved beside the checkpoint, or the
mini-benchmark's (what the quickstart trains with). Shared by the eval/infer CLIs, the trainer's evaluation
callback and the lm-eval adapter, so all four read a checkpoint with the same vocabulary."""

from __future__ import annotations

import logging
import pathlib

log = logging.getLogger(__name__)


def resolve_tokenizer(tokenizer_path: str | None, checkpoint_path: str | None):
    """The vocabulary of `tokenizer_path`, else of the checkpoint dir, else the mini-benchmark's. OPT's BPE gives
    an `OPTVocabulary`, any other `tokenizer.json` (Llama 3, Qwen2, Mistral) an `HFTokenizerVocabulary` with its own
    special ids (`optiml_jax.vocabularies.directories.load_vocabulary`)."""
    from optiml_jax.vocabularies import OPTVocabulary
    from optiml_jax.vocabularies.directories import load_vocabulary

    candidates = [tokenizer_path] if tokenizer_path else []
    if checkpoint_path:
        p = pathlib.Path(checkpoint_path)
        candidates += [str(p), str(p.parent)]
    for c in candidates:
        if c and ((pathlib.Path(c) / "vocab.json").is_file() or (pathlib.Path(c) / "tokenizer.json").is_file()):
            return load_vocabulary(c)
    if tokenizer_path:
        raise FileNotFoundError(f"TOKENIZER_PATH={tokenizer_path}: no vocab.json + merges.txt or tokenizer.json")
    from optiml_jax.tasks.mini_bench.tokenizer import TOKENIZER_DIR

    log.info("no tokenizer next to the checkpoint: using the mini-benchmark tokenizer %s", TOKENIZER_DIR)
    return OPTVocabulary(TOKENIZER_DIR)
