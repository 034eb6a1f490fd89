"""Evaluate or generate from a checkpoint path: the functions the eval and infer CLIs bind with gin.

`evaluate(checkpoint_path, output_dir, ...)` loads any checkpoint the resolver accepts (a training MODEL_DIR or
step dir, a converter Orbax dir, a Hugging Face OPT, Llama, Mistral or Qwen2 dir) and evaluates
  * a SeqIO task or mixture (`mixture_or_task_name`) with its own metric_fns through seqio.Evaluator, T5X style:
    output_dir/inference_eval/ (<task>-metrics.jsonl, <task>-<step>.jsonl, TensorBoard), and/or
  * the project's suites (`suites`): results.json, predictions, TensorBoard and report.md in output_dir.
`suites=None` (the default) means the mini-benchmark when no task is named and nothing else when one is;
naming both runs both, into the same output_dir. `infer(checkpoint_path, prompts, ...)` returns generations.
"""

from __future__ import annotations

import os
from typing import Sequence

from optiml_jax.evaluation.seqio_eval import EvalConfigError
from optiml_jax.evaluation.vocabulary import resolve_tokenizer
from optiml_jax.paths import check_reachable, user_path

DEFAULT_SUITES = ("mini_bench",)


def chosen_suites(suites: Sequence[str] | None, mixture_or_task_name: str | None) -> tuple[str, ...]:
    """The suites to run: as given, or (None) the mini-benchmark unless a SeqIO task/mixture is named."""
    if suites is None:
        return () if mixture_or_task_name else DEFAULT_SUITES
    if isinstance(suites, str):
        suites = (suites,)
    chosen = tuple(suites)
    if not chosen and not mixture_or_task_name:
        raise EvalConfigError("nothing to evaluate: SUITES is empty and MIXTURE_OR_TASK_NAME is unset")
    return chosen


def check_seqio_caches(name: str) -> None:
    """USE_CACHED_TASKS=True needs a seqio cache of every task (seqio itself only asserts, deep in the read)."""
    import seqio

    missing = [t.name for t in seqio.get_subtasks(seqio.get_mixture_or_task(name)) if not t.cache_dir]
    if missing:
        raise EvalConfigError(
            f"USE_CACHED_TASKS = True, but no seqio cache of {', '.join(missing[:5])}"
            f"{' ...' if len(missing) > 5 else ''} was found: run seqio's cache_tasks_main for it and pass "
            "--seqio_additional_cache_dirs=DIR, or set USE_CACHED_TASKS = False")


def _checked_seqio_shots(seqio_shots, mixture_or_task_name: str | None, demonstration_split: str,
                         use_chat_template: bool) -> tuple[int, ...]:
    """SEQIO_SHOTS as a tuple, and every setting that goes with it checked (before any weights load)."""
    seqio_shots = (seqio_shots,) if isinstance(seqio_shots, int) else tuple(seqio_shots)
    if not seqio_shots or not all(isinstance(k, int) and not isinstance(k, bool) and k >= 0 for k in seqio_shots):
        raise EvalConfigError(f"SEQIO_SHOTS = {seqio_shots!r}: must be non-negative shot counts, e.g. (0, 5)")
    if seqio_shots != (0,) and not mixture_or_task_name:
        raise EvalConfigError(f"SEQIO_SHOTS = {seqio_shots!r} applies to the SeqIO task or mixture named by "
                              "MIXTURE_OR_TASK_NAME, and none is set (the suites' shots are SHOTS)")
    if demonstration_split != "train" and not any(seqio_shots):
        raise EvalConfigError(f"evaluate.demonstration_split = {demonstration_split!r} is only read by a k-shot "
                              "SeqIO evaluation: set SEQIO_SHOTS too, e.g. (0, 5)")
    if use_chat_template and any(seqio_shots):
        raise EvalConfigError(f"USE_CHAT_TEMPLATE = True takes the SeqIO evaluation zero-shot only, not SEQIO_SHOTS = "
                              f"{seqio_shots!r} (its k-shot prompts are built in token ids): set SEQIO_SHOTS = (0,)")
    return seqio_shots


def _check_seqio_task(mixture_or_task_name: str, split: str, use_cached: bool) -> None:
    """The named task resolves as train resolves it (OPT-IML Bench mixtures on demand), has its caches when
    USE_CACHED_TASKS asks for them, and has metric_fns: all before any weights load."""
    from optiml_jax.data.mixture_names import ensure_registered
    from optiml_jax.evaluation.seqio_eval import eval_tasks

    ensure_registered(mixture_or_task_name)
    if use_cached:
        check_seqio_caches(mixture_or_task_name)
    eval_tasks(mixture_or_task_name, split)


def evaluate(checkpoint_path: str, output_dir: str, *, tokenizer_dir: str | None = None,
             suites: Sequence[str] | None = None, shots: Sequence[int] = (0, 5),
             data_dir: str | None = None, max_examples: int | None = None, baseline_results: str | None = None,
             max_new_tokens: int = 256, rank_normalization: str = "none", score_batch_size: int = 8,
             predict_batch_size: int = 8, seed: int = 0, step: int | None = None, title: str = "Evaluation",
             mixture_or_task_name: str | None = None, split: str = "validation",
             task_feature_lengths: dict[str, int] | None = None, use_cached: bool = False,
             seqio_shots: Sequence[int] = (0,), demonstration_split: str = "train",
             use_chat_template: bool = False) -> dict:
    """Load the checkpoint, evaluate the SeqIO task/mixture and/or the suites, write the outputs.

    Returns the suites' results dict (as in results.json; {"step"} alone when no suite ran) with, when a task or
    mixture was named, "seqio": {task: {metric: value}}. `max_examples` caps the examples per task for both;
    `step` (default: the checkpoint's, else 0) names the seqio outputs and TensorBoard step. `seqio_shots`: the
    named task's evaluations, 0-shot ("seqio") and k-shot ("seqio_<k>shot", demonstrations from its
    `demonstration_split`; outputs in inference_eval_<k>shot/). `use_chat_template` (USE_CHAT_TEMPLATE): the
    suites' prompts go through the tokenizer's chat template (`evaluator.chat_source`), and so do the SeqIO task's,
    zero-shot (`seqio_glue.chat_turns`).
    """
    from optiml_jax.evaluation.evaluator import run_evaluation
    from optiml_jax.evaluation.model import DecoderOnlyModel
    from optiml_jax.evaluation.suites import build_suites

    chosen = chosen_suites(suites, mixture_or_task_name)
    # A bucket stays a bucket (optiml_jax.paths), and one that cannot be reached stops here, before any weights load.
    output_dir = os.fspath(check_reachable(user_path(output_dir, "EVAL_OUTPUT_DIR"), "EVAL_OUTPUT_DIR"))
    seqio_shots = _checked_seqio_shots(seqio_shots, mixture_or_task_name, demonstration_split, use_chat_template)
    if mixture_or_task_name:
        _check_seqio_task(mixture_or_task_name, split, use_cached)
    vocab = resolve_tokenizer(tokenizer_dir, checkpoint_path)
    chat = chat_template_of(vocab, use_chat_template)  # a tokenizer without one: before any weights load
    model = DecoderOnlyModel.from_checkpoint(checkpoint_path, vocab, score_batch_size=score_batch_size,
                                     predict_batch_size=predict_batch_size, max_new_tokens=max_new_tokens,
                                     chat_template=chat)
    if chosen and model.config.vocab_size < vocab.vocab_size:
        raise ValueError(f"tokenizer {getattr(vocab, 'path', '?')} has {vocab.vocab_size} ids but the checkpoint's "
                         f"embedding has {model.config.vocab_size}: wrong TOKENIZER_DIR?")
    step = _step_read(model, checkpoint_path) if step is None else step
    seqio_results = {}
    if mixture_or_task_name:
        seqio_results = _evaluate_seqio(model, mixture_or_task_name, seqio_shots, output_dir=output_dir,
                                        step=0 if step is None else step, split=split,
                                        task_feature_lengths=task_feature_lengths, max_new_tokens=max_new_tokens,
                                        num_examples=max_examples, use_cached=use_cached, seed=seed,
                                        demonstration_split=demonstration_split)
    if chosen:
        from optiml_jax.sources import template_failures

        template_failures.drain()  # only this evaluation's drops go into its results.json
        tasks = build_suites(chosen, data_dir, max_examples=max_examples)
        results = run_evaluation(model, tasks, shots, output_dir, step, seed=seed,
                                 rank_normalization=rank_normalization, max_new_tokens=max_new_tokens,
                                 baseline=baseline_results, title=title, template_failures=template_failures.drain())
    else:
        results = {"step": step}
    for k, values in seqio_results.items():
        results["seqio" if k == 0 else f"seqio_{k}shot"] = values
    return results


def _step_read(model, checkpoint_path) -> int | None:
    """The step whose parameters were read, not the run's newest step now (it may be training and pruning)."""
    from optiml_jax.checkpoints.resolve import checkpoint_step

    read = getattr(model, "checkpoint_step", None)
    return read if read is not None else checkpoint_step(checkpoint_path)


def _evaluate_seqio(model, mixture_or_task_name: str, seqio_shots, **kwargs) -> dict[int, dict]:
    """The named SeqIO task or mixture's evaluations, one per shot count (0: "seqio", k: "seqio_<k>shot")."""
    from optiml_jax.evaluation.seqio_eval import evaluate_mixture_or_task

    return {k: evaluate_mixture_or_task(model, mixture_or_task_name, shots=k, **kwargs) for k in seqio_shots}


def chat_template_of(vocabulary, use_chat_template: bool):
    """The vocabulary's `ChatTemplate` when USE_CHAT_TEMPLATE is on (None when off); a tokenizer without a chat
    template is an error naming its directory and the macro."""
    if not use_chat_template:
        return None
    from optiml_jax.vocabularies.chat_template import ChatTemplate

    return ChatTemplate.from_vocabulary(vocabulary)


def infer(checkpoint_path: str, prompts: Sequence[str], *, tokenizer_dir: str | None = None,
          max_new_tokens: int = 256, temperature: float = 0.0, seed: int = 0, batch_size: int = 8,
          use_chat_template: bool = False) -> list[str]:
    """Generations for `prompts` (text in, text out). `use_chat_template`: each prompt is the user turn of the
    tokenizer's chat template, followed by its generation prompt."""
    import jax

    from optiml_jax.evaluation.model import DecoderOnlyModel
    from optiml_jax.vocabularies.chat_template import user

    vocab = resolve_tokenizer(tokenizer_dir, checkpoint_path)
    chat = chat_template_of(vocab, use_chat_template)
    model = DecoderOnlyModel.from_checkpoint(checkpoint_path, vocab, predict_batch_size=batch_size,
                                     max_new_tokens=max_new_tokens, temperature=temperature, chat_template=chat)
    if chat is not None:
        prompts = [chat.prompt_text([user(p)]) for p in prompts]
    return model.generate_texts(list(prompts), rng=jax.random.key(seed) if temperature > 0 else None)
