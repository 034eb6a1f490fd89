"""Evaluate or generate from a checkpoint path: the functions the eval and infer CLIs bind with gin.

`evaluate(checkpoint_path, output_dir, ...)` loads any checkpoint the resolver accepts (a training MODEL_DIR or
step dir, a converter Orbax dir, a Hugging Face OPT dir), evaluates named suites and writes results.json,
predictions, TensorBoard and report.md; `infer(checkpoint_path, prompts, ...)` returns generations.
"""

from __future__ import annotations

from typing import Sequence

from optiml_jax.evaluation.vocabulary import resolve_tokenizer


def evaluate(checkpoint_path: str, output_dir: str, *, tokenizer_path: str | None = None,
             benchmarks: Sequence[str] = ("mini_bench",), shots: Sequence[int] = (0, 5),
             data_dir: str | None = None, max_examples: int | None = None, baseline_results: str | None = None,
             max_new_tokens: int = 256, rank_normalization: str = "none", score_batch_size: int = 8,
             predict_batch_size: int = 8, seed: int = 0, step: int | None = None, title: str = "Evaluation") -> dict:
    """Load the checkpoint, evaluate the suites, write the outputs. Returns the results dict."""
    from optiml_jax.evaluation.evaluator import run_evaluation
    from optiml_jax.evaluation.model import OPTModel
    from optiml_jax.checkpoints.resolve import checkpoint_step
    from optiml_jax.evaluation.suites import build_suites

    vocab = resolve_tokenizer(tokenizer_path, checkpoint_path)
    model = OPTModel.from_checkpoint(checkpoint_path, vocab, score_batch_size=score_batch_size,
                                     predict_batch_size=predict_batch_size, max_new_tokens=max_new_tokens)
    if model.config.vocab_size < vocab.vocab_size:
        raise ValueError(f"tokenizer {getattr(vocab, 'path', '?')} has {vocab.vocab_size} ids but the checkpoint's "
                         f"embedding has {model.config.vocab_size}: wrong TOKENIZER_PATH?")
    tasks = build_suites(benchmarks, data_dir, max_examples=max_examples)
    step = checkpoint_step(checkpoint_path) if step is None else step
    return run_evaluation(model, tasks, shots, output_dir, step, seed=seed, rank_normalization=rank_normalization,
                          max_new_tokens=max_new_tokens, baseline=baseline_results, title=title)


def infer(checkpoint_path: str, prompts: Sequence[str], *, tokenizer_path: str | None = None,
          max_new_tokens: int = 256, temperature: float = 0.0, seed: int = 0, batch_size: int = 8) -> list[str]:
    """Generations for `prompts` (text in, text out)."""
    import jax

    from optiml_jax.evaluation.model import OPTModel

    vocab = resolve_tokenizer(tokenizer_path, checkpoint_path)
    model = OPTModel.from_checkpoint(checkpoint_path, vocab, predict_batch_size=batch_size,
                                     max_new_tokens=max_new_tokens, temperature=temperature)
    return model.generate_texts(list(prompts), rng=jax.random.key(seed) if temperature > 0 else None)
