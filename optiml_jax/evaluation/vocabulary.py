"""Which tokenizer evaluates a checkpoint: the one named, the one saved beside the checkpoint, or the
mini-benchmark's (what the quickstart trains with). Shared by the eval/infer CLIs, the trainer's evaluation
callback and the lm-eval adapter, so all four read a checkpoint with the same vocabulary."""

from __future__ import annotations

import logging

from optiml_jax.paths import user_path

log = logging.getLogger(__name__)


def resolve_tokenizer(tokenizer_dir: str | None, checkpoint_path: str | None):
    """The vocabulary of `tokenizer_dir`, else of the checkpoint dir, else the mini-benchmark's. OPT's BPE gives
    an `OPTVocabulary`, any other `tokenizer.json` (Llama 3, Qwen2, Mistral) an `HFTokenizerVocabulary` with its own
    special ids (`optiml_jax.vocabularies.directories.load_vocabulary`)."""
    from optiml_jax.vocabularies import OPTVocabulary
    from optiml_jax.vocabularies.directories import load_vocabulary

    candidates = [user_path(tokenizer_dir, "TOKENIZER_DIR")] if tokenizer_dir else []
    if checkpoint_path:
        p = user_path(checkpoint_path, "CHECKPOINT_PATH")  # a bucket stays a URL (optiml_jax.paths)
        candidates += [p, p.parent]
    for c in candidates:
        if c and ((c / "vocab.json").is_file() or (c / "tokenizer.json").is_file()):
            return load_vocabulary(c)
    if tokenizer_dir:
        raise FileNotFoundError(f"TOKENIZER_DIR={tokenizer_dir}: no vocab.json + merges.txt or tokenizer.json")
    if checkpoint_path:
        from optiml_jax.checkpoints.metaseq import looks_like_metaseq

        if looks_like_metaseq(checkpoint_path):  # released OPT weights: the mini-benchmark's vocabulary would be wrong
            raise FileNotFoundError(f"metaseq checkpoint {checkpoint_path} has no tokenizer beside it: set "
                                    "TOKENIZER_DIR to the OPT tokenizer (vocab.json + merges.txt)")
    from optiml_jax.tasks.mini_bench.tokenizer import TOKENIZER_DIR

    fallback = OPTVocabulary(TOKENIZER_DIR)
    config = _saved_config(checkpoint_path)
    if config is not None and config.vocab_size != fallback.vocab_size:
        raise FileNotFoundError(
            f"no tokenizer next to the checkpoint {checkpoint_path} (vocab_size {config.vocab_size}) and TOKENIZER_DIR "
            f"is unset: set TOKENIZER_DIR to the tokenizer it was trained with (the mini-benchmark's, the only "
            f"default, has {fallback.vocab_size} ids)")
    log.warning("no tokenizer next to the checkpoint %s (a run dir keeps its own since #21) and TOKENIZER_DIR is unset: "
                "using the mini-benchmark tokenizer %s; set TOKENIZER_DIR if the model was trained with another",
                checkpoint_path, TOKENIZER_DIR)
    return fallback


def _saved_config(checkpoint_path):
    """The checkpoint's model config when it records one (None: unknown, e.g. no checkpoint path)."""
    if not checkpoint_path:
        return None
    from optiml_jax.checkpoints.resolve import resolve

    try:
        return resolve(checkpoint_path).saved_config()
    except (OSError, ValueError):
        return None
