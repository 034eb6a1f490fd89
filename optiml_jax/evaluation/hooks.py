"""What the trainer calls: evaluate live parameters on named suites and write the step's outputs.

    from optiml_jax.evaluation.hooks import evaluate_params
    results = evaluate_params(config, state.params, vocabulary=VOCABULARY, output_dir=MODEL_DIR / "eval",
                              step=step, suites=("mini_bench",), shots=(0, 5), max_examples=20)

Trainer callbacks, all `callback(config, params, step, model_dir) -> results` (bind one to `EvaluationConfig.eval_callback`):
  EvalCallback        the project's suites -> MODEL_DIR/eval/step_<N>/ (results.json, report.md, ...)
  SeqioEvalCallback   a SeqIO task's/mixture's own metric_fns through seqio.Evaluator -> MODEL_DIR/inference_eval/
                      (T5X's infer_eval_dataset_cfg role)
  CompositeCallback   several of them: `CompositeCallback.callbacks = [@EvalCallback(), @SeqioEvalCallback()]`

Parameters may be boxed/scanned/sharded (they are unboxed, unrolled and, without a mesh, gathered to the
default device). The model is rebuilt per call, so compiled scoring/generation programs are reused across
calls only through JAX's jit cache (same config and shapes -> no recompilation).
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import flax.linen as nn
import gin
import jax
from jax.sharding import Mesh, NamedSharding

from optiml_jax.evaluation.evaluator import run_evaluation
from optiml_jax.evaluation.model import DecoderOnlyModel
from optiml_jax.evaluation.suites import build_suites
from optiml_jax.models import ModelConfig
from optiml_jax.paths import user_path


def evaluate_params(config: ModelConfig, params: Any, *, vocabulary: Any, output_dir: str | os.PathLike | None,
                    step: int | None, suites: Sequence[str] = ("mini_bench",), shots: Sequence[int] = (0, 5),
                    data_dir: str | None = None, max_examples: int | None = None, max_new_tokens: int = 256,
                    baseline: str | os.PathLike | dict | None = None, mesh: Mesh | None = None,
                    batch_size: int = 8, title: str = "Evaluation", tasks=None, chat_template=None) -> dict:
    """Evaluate `params` (e.g. the train state's) -> the results dict; writes outputs when `output_dir` is set.

    `tasks` (a list of EvalTask) overrides `suites`. Dropout is off; the config's compute dtype is kept.
    `chat_template` (a `ChatTemplate`): prompts through it, as `USE_CHAT_TEMPLATE` trains.
    """
    model = DecoderOnlyModel(config.replace(dropout_rate=0.0), params, vocabulary, mesh, score_batch_size=batch_size,
                     predict_batch_size=batch_size, max_new_tokens=max_new_tokens, chat_template=chat_template)
    if tasks is None:
        tasks = build_suites(suites, data_dir, max_examples=max_examples)
    return run_evaluation(model, tasks, shots, output_dir, step, max_new_tokens=max_new_tokens, baseline=baseline,
                          title=title)


def params_mesh(params: Any) -> Mesh | None:
    """The mesh of parameters that span several processes (a multi-host training state), else None.

    Such parameters cannot be gathered to one device; evaluation then runs SPMD on the training mesh, every
    process feeding the same prompts and receiving every score (process 0 writes the files).
    """
    for leaf in jax.tree.leaves(nn.unbox(params)):
        sharding = getattr(leaf, "sharding", None)
        if isinstance(sharding, NamedSharding) and not leaf.is_fully_addressable:
            return sharding.mesh
    return None


@gin.configurable
class EvalCallback:
    """A trainer-side evaluation callback: `callback(config, params, step, model_dir) -> results`.

    Writes `model_dir/eval/step_<step>/` (results.json, predictions, report.md, TensorBoard) and keeps the
    first evaluated step (the model before training when the trainer calls it at step 0) as the baseline of
    every later report, so the final report.md is the quickstart's "before vs after" table.

    Gin: `EvaluationConfig.eval_callback = @EvalCallback()` with `EvalCallback.suites`, `.shots`, ... bound.
    """

    def __init__(self, suites: Sequence[str] = ("mini_bench",), shots: Sequence[int] = (0, 5),
                 max_examples: int | None = 20, max_new_tokens: int = 32, data_dir: str | None = None,
                 tokenizer_dir: str | None = None, batch_size: int = 8, mesh: Mesh | None = None,
                 print_summary: bool = True, use_chat_template: bool = False):
        self.suites, self.shots = tuple(suites), tuple(shots)
        self.max_examples, self.max_new_tokens = max_examples, max_new_tokens
        self.data_dir, self.tokenizer_dir = data_dir, tokenizer_dir
        self.batch_size, self.mesh = batch_size, mesh
        self.print_summary = print_summary
        self.use_chat_template = bool(use_chat_template)  # gin: %USE_CHAT_TEMPLATE, as the training stream
        self._chat = None
        self.baseline_dir: str | None = None
        self._tasks = None
        self._vocab = None

    def __call__(self, config: ModelConfig, params: Any, step: int, model_dir: str | os.PathLike) -> dict:
        if self._vocab is None:
            from optiml_jax.evaluation.vocabulary import resolve_tokenizer

            self._vocab = resolve_tokenizer(self.tokenizer_dir, None)
            if self.use_chat_template:
                from optiml_jax.vocabularies.chat_template import ChatTemplate

                self._chat = ChatTemplate.from_vocabulary(self._vocab)
            self._tasks = build_suites(self.suites, self.data_dir, max_examples=self.max_examples)
        out = user_path(model_dir, "MODEL_DIR") / "eval" / f"step_{int(step)}"
        before = user_path(model_dir, "MODEL_DIR") / "eval" / "step_0" / "results.json"
        if self.baseline_dir is None and step > 0 and before.is_file():
            self.baseline_dir = str(before.parent)  # a resumed run: the pre-training evaluation is on disk
        results = evaluate_params(config, params, vocabulary=self._vocab, output_dir=out, step=int(step),
                                  shots=self.shots, max_new_tokens=self.max_new_tokens, baseline=self.baseline_dir,
                                  mesh=self.mesh or params_mesh(params), batch_size=self.batch_size,
                                  tasks=self._tasks, title=f"Evaluation at step {int(step)}", chat_template=self._chat)
        if self.baseline_dir is None:
            self.baseline_dir = str(out)
        elif self.print_summary and jax.process_index() == 0:
            print(self.summary(results, step))
        return results

    def summary(self, results: dict, step: int) -> str:
        """Per-level scores before training (the baseline) and at `step`, as printed by the quickstart."""
        import json

        from optiml_jax.evaluation.report import markdown_table, reading

        baseline = json.loads((user_path(self.baseline_dir, "MODEL_DIR") / "results.json").read_text())
        head = f"Evaluation at step {int(step)} vs step {baseline.get('step')} (before training); scores x100"
        tables = [markdown_table(results, section, baseline, run_name=f"step {int(step)}",
                                 baseline_name="before") for section in ("levels", "collections")]
        return "\n\n".join([head, *tables, f"Reading: {reading(results, baseline)}"])


@gin.configurable
class SeqioEvalCallback:
    """Trainer-side `seqio.Evaluator` run: the task's/mixture's own metric_fns on `split`, at every call.

    `callback(config, params, step, model_dir) -> {task: {metric: value}}`; seqio's JSONLogger and
    TensorBoardLogger write `model_dir/inference_eval/` (`<task>-metrics.jsonl`, `<task>-<step>.jsonl`,
    `<task>/events.*`), as T5X's trainer does. The Evaluator (and its cached datasets) is built on the first
    call and reused. `max_new_tokens` None: `task_feature_lengths["targets"]` when given, else 256.
    `shots=k` evaluates k-shot as the eval CLI's `SEQIO_SHOTS` does (`seqio_kshot`: demonstrations from
    `demonstration_split`, task-level placement where the task has a definition), into `inference_eval_<k>shot/`;
    a CompositeCallback of two of these gives 0-shot and k-shot every `EVAL_PERIOD`.

    Gin: `EvaluationConfig.eval_callback = @SeqioEvalCallback()` with `SeqioEvalCallback.mixture_or_task_name = '...'`
    (and `.split`, `.task_feature_lengths`, ...), or inside a `CompositeCallback` beside `EvalCallback`.
    """

    def __init__(self, mixture_or_task_name: str, split: str = "validation",
                 task_feature_lengths: dict[str, int] | None = None, *, max_new_tokens: int | None = None,
                 num_examples: int | None = None, use_cached: bool = False, feature_converter: Any = None,
                 batch_size: int = 8, mesh: Mesh | None = None, output_subdir: str | None = None,
                 seed: int | None = 42, shots: int = 0, demonstration_split: str = "train",
                 use_chat_template: bool = False):
        from optiml_jax.evaluation.seqio_eval import EvalConfigError, inference_eval_dir

        if use_chat_template and shots:
            raise EvalConfigError(f"USE_CHAT_TEMPLATE = True takes SeqioEvalCallback zero-shot only, not "
                                  f"shots = {shots} (its k-shot prompts are built in token ids)")
        self.use_chat_template = bool(use_chat_template)  # gin: %USE_CHAT_TEMPLATE, as the training stream

        if shots < 0:
            raise ValueError(f"SeqioEvalCallback.shots must be >= 0, got {shots}")
        if not shots and demonstration_split != "train":
            raise ValueError(f"SeqioEvalCallback.demonstration_split={demonstration_split!r} is only read by a k-shot "
                             "evaluation: set SeqioEvalCallback.shots too")
        self.shots, self.demonstration_split = int(shots), demonstration_split

        self.mixture_or_task_name, self.split = mixture_or_task_name, split
        self.task_feature_lengths = None if task_feature_lengths is None else dict(task_feature_lengths)
        if max_new_tokens is None:
            max_new_tokens = int((self.task_feature_lengths or {}).get("targets", 256))
        self.max_new_tokens = int(max_new_tokens)
        self.num_examples, self.use_cached, self.feature_converter = num_examples, use_cached, feature_converter
        self.batch_size, self.mesh, self.seed = batch_size, mesh, seed
        self.output_subdir = output_subdir or inference_eval_dir(self.shots)
        self._evaluator = None
        self._log_dir: str | None = None

    def evaluator(self, model_dir: str | os.PathLike):
        """The (cached) seqio.Evaluator logging under `model_dir/<output_subdir>`."""
        from optiml_jax.evaluation.seqio_eval import make_evaluator

        log_dir = os.path.join(os.fspath(model_dir), self.output_subdir)
        if self._evaluator is None or self._log_dir != log_dir:
            self._evaluator = make_evaluator(
                self.mixture_or_task_name, split=self.split, task_feature_lengths=self.task_feature_lengths,
                feature_converter=self.feature_converter, log_dir=log_dir, use_cached=self.use_cached,
                num_examples=self.num_examples, seed=self.seed)
            self._log_dir = log_dir
        return self._evaluator

    def __call__(self, config: ModelConfig, params: Any, step: int, model_dir: str | os.PathLike) -> dict:
        from optiml_jax.evaluation.seqio_eval import run_seqio_evaluation

        evaluator = self.evaluator(model_dir)
        vocabulary = evaluator.eval_tasks[0].output_features["targets"].vocabulary
        chat = None
        if self.use_chat_template:
            from optiml_jax.vocabularies.chat_template import ChatTemplate

            chat = ChatTemplate.from_vocabulary(vocabulary)
        model = DecoderOnlyModel(config.replace(dropout_rate=0.0), params, vocabulary, self.mesh or params_mesh(params),
                         score_batch_size=self.batch_size, predict_batch_size=self.batch_size,
                         max_new_tokens=self.max_new_tokens, chat_template=chat)
        return run_seqio_evaluation(model, evaluator, int(step), max_new_tokens=self.max_new_tokens, shots=self.shots,
                                    demonstration_split=self.demonstration_split,
                                    seed=0 if self.seed is None else self.seed)


@gin.configurable
class CompositeCallback:
    """Several trainer callbacks behind the trainer's one `eval_callback`, called in order with the same
    arguments -> {name: that callback's results}, named by class (`EvalCallback`, `SeqioEvalCallback`, a
    repeated class gets `_2`, `_3`, ...).

    Gin: `EvaluationConfig.eval_callback = @CompositeCallback()` and
         `CompositeCallback.callbacks = [@EvalCallback(), @SeqioEvalCallback()]`.
    """

    def __init__(self, callbacks: Sequence[Any]):
        self.callbacks = [c for c in callbacks if c is not None]
        self.names: list[str] = []
        for c in self.callbacks:
            base = getattr(c, "__name__", type(c).__name__)
            name, n = base, 1
            while name in self.names:
                n += 1
                name = f"{base}_{n}"
            self.names.append(name)

    def __call__(self, config: ModelConfig, params: Any, step: int, model_dir: str | os.PathLike) -> dict:
        return {name: c(config, params, step, model_dir) for name, c in zip(self.names, self.callbacks)}
