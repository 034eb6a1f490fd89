"""What the trainer calls: evaluate live parameters on named suites and write the step's outputs.

    from optiml_jax.evaluation.hooks import evaluate_params
    results = evaluate_params(config, state.params, vocabulary=VOCABULARY, output_dir=MODEL_DIR / "eval",
                              step=step, benchmarks=("mini_bench",), shots=(0, 5), max_examples=20)

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
from optiml_jax.evaluation.model import OPTModel
from optiml_jax.evaluation.suites import build_suites
from optiml_jax.models import OPTConfig


def evaluate_params(config: OPTConfig, params: Any, *, vocabulary: Any, output_dir: str | os.PathLike | None,
                    step: int | None, benchmarks: Sequence[str] = ("mini_bench",), shots: Sequence[int] = (0, 5),
                    data_dir: str | None = None, max_examples: int | None = None, max_new_tokens: int = 256,
                    baseline: str | os.PathLike | dict | None = None, mesh: Mesh | None = None,
                    batch_size: int = 8, title: str = "Evaluation", tasks=None) -> dict:
    """Evaluate `params` (e.g. the train state's) -> the results dict; writes outputs when `output_dir` is set.

    `tasks` (a list of EvalTask) overrides `benchmarks`. Dropout is off; the config's compute dtype is kept.
    """
    model = OPTModel(config.replace(dropout_rate=0.0), params, vocabulary, mesh, score_batch_size=batch_size,
                     predict_batch_size=batch_size, max_new_tokens=max_new_tokens)
    if tasks is None:
        tasks = build_suites(benchmarks, data_dir, max_examples=max_examples)
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

    Gin: `train.eval_callback = @EvalCallback()` with `EvalCallback.benchmarks`, `.shots`, ... bound.
    """

    def __init__(self, benchmarks: Sequence[str] = ("mini_bench",), shots: Sequence[int] = (0, 5),
                 max_examples: int | None = 20, max_new_tokens: int = 32, data_dir: str | None = None,
                 tokenizer_path: str | None = None, batch_size: int = 8, mesh: Mesh | None = None,
                 print_summary: bool = True):
        self.benchmarks, self.shots = tuple(benchmarks), tuple(shots)
        self.max_examples, self.max_new_tokens = max_examples, max_new_tokens
        self.data_dir, self.tokenizer_path = data_dir, tokenizer_path
        self.batch_size, self.mesh = batch_size, mesh
        self.print_summary = print_summary
        self.baseline_dir: str | None = None
        self._tasks = None
        self._vocab = None

    def __call__(self, config: OPTConfig, params: Any, step: int, model_dir: str | os.PathLike) -> dict:
        import pathlib

        if self._vocab is None:
            from optiml_jax.evaluation.vocabulary import resolve_tokenizer

            self._vocab = resolve_tokenizer(self.tokenizer_path, None)
            self._tasks = build_suites(self.benchmarks, self.data_dir, max_examples=self.max_examples)
        out = pathlib.Path(model_dir) / "eval" / f"step_{int(step)}"
        before = pathlib.Path(model_dir) / "eval" / "step_0" / "results.json"
        if self.baseline_dir is None and step > 0 and before.is_file():
            self.baseline_dir = str(before.parent)  # a resumed run: the pre-training evaluation is on disk
        results = evaluate_params(config, params, vocabulary=self._vocab, output_dir=out, step=int(step),
                                  shots=self.shots, max_new_tokens=self.max_new_tokens, baseline=self.baseline_dir,
                                  mesh=self.mesh or params_mesh(params), batch_size=self.batch_size,
                                  tasks=self._tasks, title=f"Evaluation at step {int(step)}")
        if self.baseline_dir is None:
            self.baseline_dir = str(out)
        elif self.print_summary and jax.process_index() == 0:
            print(self.summary(results, step))
        return results

    def summary(self, results: dict, step: int) -> str:
        """Per-level scores before training (the baseline) and at `step`, as printed by the quickstart."""
        import json
        import pathlib

        from optiml_jax.evaluation.report import markdown_table, reading

        baseline = json.loads((pathlib.Path(self.baseline_dir) / "results.json").read_text())
        head = f"Evaluation at step {int(step)} vs step {baseline.get('step')} (before training); scores x100"
        tables = [markdown_table(results, section, baseline, run_name=f"step {int(step)}",
                                 baseline_name="before") for section in ("levels", "collections")]
        return "\n\n".join([head, *tables, f"Reading: {reading(results, baseline)}"])
