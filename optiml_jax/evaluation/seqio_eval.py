"""A SeqIO task's or mixture's own `metric_fns`, run by `seqio.Evaluator` on an `DecoderOnlyModel` (T5X's infer_eval).

    from optiml_jax.evaluation import seqio_eval
    evaluator = seqio_eval.make_evaluator("my_task", split="validation",
                                          task_feature_lengths={"inputs": 256, "targets": 64},
                                          log_dir="/tmp/eval/inference_eval")
    metrics = seqio_eval.run_seqio_evaluation(model, evaluator, step=1000)   # {task: {metric: value}}

What is run: every subtask of the name that has the split and metric functions; its predict metrics on greedy
decodes, its predict-with-aux metrics on decodes + `aux["scores"]`, its score metrics on the summed target
log-likelihood (adapters in `seqio_glue`). Targets are the task's own (its `targets_pretokenized`, else the
decoded `targets`), predictions are decoded with the task's `targets` vocabulary and both go through the task's
postprocessor, exactly as in T5X.

What is written (process 0, with `log_dir`), by seqio's own loggers as T5X writes them:
  <log_dir>/<task>-metrics.jsonl       one line {"step", metric: value, ...} per evaluation (seqio.JSONLogger)
  <log_dir>/<task>-<step:06>.jsonl     per example: input, target, prediction/output, score, aux_scores
  <log_dir>/<task>/events.out.tfevents.*   TensorBoard scalars `eval/<metric>` (seqio.TensorBoardLogger)
`python -m optiml_jax.eval` uses `EVAL_OUTPUT_DIR/inference_eval`, the trainer's `SeqioEvalCallback`
`MODEL_DIR/inference_eval` (T5X's directories).

Feature converter: `PrefixLMFeatureConverter(pack=False)` for tasks with `inputs` and `targets` (prompt =
inputs, loss/score on targets only), `DecoderFeatureConverter(pack=False)` for targets-only tasks (the prompt is
then just `</s>`). Sequence lengths: `task_feature_lengths` as in T5X (missing features, or None, take the longest
example; SeqIO truncates longer ones).

k-shot (`shots=k`, the eval CLI's `SEQIO_SHOTS`): k demonstrations of the same task, examples of its
`demonstration_split` (default train) read through the task's own `get_dataset` (all its preprocessors), drawn
once per task with `seed` (`seqio_kshot`): laid out as text by the paper's rules for tasks whose dataset carries
the raw text fields (ours: task-level placement, the definition once and then the demonstrations, where the
task gives a definition; instance-level otherwise), in token space and instance-level for a plain SeqIO task.
Outputs of a k-shot evaluation go to `<log_dir>_<k>shot` beside `inference_eval`.
"""

from __future__ import annotations

import logging
import os
import weakref
from typing import Any, Sequence

import jax

log = logging.getLogger(__name__)

INFERENCE_EVAL_DIR = "inference_eval"  # T5X's folder for the Evaluator's outputs (MODEL_DIR/inference_eval)


def inference_eval_dir(shots: int = 0) -> str:
    """The outputs folder of a `shots`-shot evaluation: T5X's `inference_eval`, `inference_eval_<k>shot` for k > 0."""
    return INFERENCE_EVAL_DIR if shots <= 0 else f"{INFERENCE_EVAL_DIR}_{int(shots)}shot"


class EvalConfigError(ValueError):
    """What to evaluate is wrong (unknown task, no metric_fns or split, nothing chosen); the CLIs print it."""


def default_loggers() -> tuple:
    import seqio

    return (seqio.JSONLogger, seqio.TensorBoardLogger)


def eval_tasks(mixture_or_task_name: str, split: str = "validation") -> list:
    """The subtasks seqio.Evaluator will evaluate; a clear error when there are none."""
    import seqio

    try:
        provider = seqio.get_mixture_or_task(mixture_or_task_name)
    except ValueError as e:
        raise EvalConfigError(
            f"MIXTURE_OR_TASK_NAME={mixture_or_task_name!r} is not a registered SeqIO task or mixture (import its "
            f"module with --gin.MIXTURE_OR_TASK_MODULE=... or --module_import=...): {e}") from e
    subtasks = seqio.get_subtasks(provider)
    from seqio.evaluation import get_valid_eval_tasks

    valid = list(get_valid_eval_tasks(subtasks, split))
    if not valid:
        why = []
        for t in subtasks:
            if split not in t.splits:
                why.append(f"{t.name}: no {split!r} split (has {list(t.splits)})")
            elif not (t.metric_fns or t.metric_objs):
                why.append(f"{t.name}: no metric_fns")
        raise EvalConfigError(f"{mixture_or_task_name!r} has no task to evaluate on split {split!r}: " + "; ".join(why))
    return valid


def feature_converter_for(tasks: Sequence) -> Any:
    """PrefixLM (inputs + targets tasks) or decoder (targets-only tasks) converter, unpacked, as the adapters
    in `seqio_glue` expect (prompt = tokens before the first weighted target position). SeqIO requires the
    tasks of a mixture to share output features, so the first task decides."""
    import seqio

    if "inputs" in tasks[0].output_features:
        return seqio.PrefixLMFeatureConverter(pack=False)
    return seqio.DecoderFeatureConverter(pack=False)


def make_evaluator(mixture_or_task_name: str, *, split: str = "validation",
                   task_feature_lengths: dict[str, int] | None = None, feature_converter: Any = None,
                   log_dir: str | os.PathLike | None = None, logger_cls: Sequence | None = None,
                   use_cached: bool = False, num_examples: int | None = None, seed: int | None = 42):
    """A `seqio.Evaluator` over the name's evaluable subtasks, logging under `log_dir` (process 0 only)."""
    import seqio

    tasks = eval_tasks(mixture_or_task_name, split)
    converter = feature_converter if feature_converter is not None else feature_converter_for(tasks)
    loggers = default_loggers() if logger_cls is None else tuple(logger_cls)
    if log_dir is None or jax.process_index() != 0:
        loggers = ()  # every process computes the same metrics (SPMD decoding); one writes them
    if loggers:
        import tensorflow as tf

        tf.io.gfile.makedirs(os.fspath(log_dir))  # seqio's JSONLogger writes into it but does not create it
    log.info("seqio.Evaluator for %s: tasks %s, split %s, lengths %s, %s", mixture_or_task_name,
             [t.name for t in tasks], split, task_feature_lengths, type(converter).__name__)
    return seqio.Evaluator(mixture_or_task_name, feature_converter=converter, eval_split=split,
                           use_cached=use_cached, seed=seed, sequence_length=task_feature_lengths,
                           num_examples=num_examples, logger_cls=loggers,
                           log_dir=os.fspath(log_dir) if loggers else None,
                           # metrics are computed at once, in this thread: nothing runs beside the trainer
                           async_compute_metrics=False)


def check_vocabularies(model, evaluator) -> None:
    """Every task's targets vocabulary must fit the model's embedding (a wrong tokenizer is an early error)."""
    for task in evaluator.eval_tasks:
        vocab = task.output_features["targets"].vocabulary
        if vocab.vocab_size > model.config.vocab_size:
            raise EvalConfigError(f"task {task.name!r}: its vocabulary has {vocab.vocab_size} ids but the model's "
                             f"embedding has {model.config.vocab_size}")


def plain_metrics(values: dict) -> dict[str, Any]:
    """seqio metric values (floats, numpy scalars, `seqio.metrics.Scalar`/`Text`) -> JSON-friendly values."""
    import numpy as np

    out = {}
    for name, v in values.items():
        v = getattr(v, "value", getattr(v, "textdata", v))
        if isinstance(v, (np.generic, np.ndarray)):
            v = v.item() if np.ndim(v) == 0 else np.asarray(v).tolist()
        out[name] = float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
    return out


_KSHOT_PROMPTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # evaluator -> {key: prompts}


def _kshot_prompts_by_task(evaluator, shots: int, split: str, seed: int) -> dict:
    """{task: KShotPrompts} for the evaluator's tasks, built once per (evaluator, shots, split, seed): the trainer's
    callback reuses its Evaluator every EVAL_PERIOD, and the demonstrations and evaluated examples do not change."""
    from optiml_jax.evaluation.seqio_kshot import task_kshot_prompts

    cache = _KSHOT_PROMPTS.setdefault(evaluator, {})
    key = (int(shots), split, int(seed))
    if key not in cache:
        cache[key] = {t.name: task_kshot_prompts(t, shots, split=split, seed=seed,
                                                 evaluated=evaluator.cached_task_datasets[t.name])
                      for t in evaluator.eval_tasks}
        for name, prompts in cache[key].items():
            log.info("%d-shot %s: %s layout, %s-level placement", shots, name, prompts.layout, prompts.placement)
    return cache[key]


def run_seqio_evaluation(model, evaluator, step: int | None, *, max_new_tokens: int | None = None,
                         shots: int = 0, demonstration_split: str = "train", seed: int = 0
                         ) -> dict[str, dict[str, Any]]:
    """Predict/score the evaluator's tasks with `model` (`shots` demonstrations before each example), run their
    metric_fns, log -> {task: {metric: value}}."""
    from optiml_jax.evaluation.seqio_glue import make_predict_fn, make_predict_with_aux_fn, make_score_fn

    check_vocabularies(model, evaluator)
    kshot_prompts = None
    if shots > 0 and getattr(model, "chat_template", None) is not None:
        raise EvalConfigError(f"USE_CHAT_TEMPLATE = True: the SeqIO evaluation takes it zero-shot only, not {shots}-shot "
                              "(SEQIO_SHOTS / SeqioEvalCallback.shots): its k-shot prompts are built in token ids")
    if shots > 0:
        by_task = _kshot_prompts_by_task(evaluator, shots, demonstration_split, seed)
        # seqio hands each adapter the task's converted dataset, the object `Evaluator.cached_model_datasets`
        # keeps per task name; that identity says whose demonstrations to use.
        names = {id(ds): name for name, ds in evaluator.cached_model_datasets.items()}

        def kshot_prompts(dataset):
            return by_task[names[id(dataset)]]
    future, _ = evaluator.evaluate(
        compute_metrics=True, step=None if step is None else int(step),
        predict_fn=make_predict_fn(model, max_new_tokens=max_new_tokens, kshot_prompts=kshot_prompts),
        predict_with_aux_fn=make_predict_with_aux_fn(model, max_new_tokens=max_new_tokens,
                                                     kshot_prompts=kshot_prompts),
        score_fn=make_score_fn(model, kshot_prompts=kshot_prompts))
    results = {task: plain_metrics(values) for task, values in future.result().items()}
    for task, values in results.items():
        log.info("seqio eval %s step %s: %s", task, step, values)
    return results


def evaluate_mixture_or_task(model, mixture_or_task_name: str, *, output_dir: str | os.PathLike | None,
                             step: int | None, split: str = "validation",
                             task_feature_lengths: dict[str, int] | None = None, max_new_tokens: int | None = None,
                             num_examples: int | None = None, use_cached: bool = False, feature_converter: Any = None,
                             seed: int | None = 42, shots: int = 0, demonstration_split: str = "train"
                             ) -> dict[str, dict[str, Any]]:
    """One evaluation (the eval CLI's): outputs under `output_dir/inference_eval` (`..._<k>shot` for k-shot)
    -> {task: {metric: value}}."""
    log_dir = None if output_dir is None else os.path.join(os.fspath(output_dir), inference_eval_dir(shots))
    evaluator = make_evaluator(mixture_or_task_name, split=split, task_feature_lengths=task_feature_lengths,
                               feature_converter=feature_converter, log_dir=log_dir, use_cached=use_cached,
                               num_examples=num_examples, seed=seed)
    try:
        return run_seqio_evaluation(model, evaluator, step, max_new_tokens=max_new_tokens, shots=shots,
                                    demonstration_split=demonstration_split, seed=0 if seed is None else seed)
    finally:
        evaluator.close()
