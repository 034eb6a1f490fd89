"""Evaluation entry point, T5X style: `python -m optiml_jax.eval --gin_file=gin/runs/eval.gin --gin.KEY=VALUE ...`.

    python -m optiml_jax.eval --gin_file=gin/runs/eval.gin \
        --gin.CHECKPOINT_PATH=/tmp/optiml_quickstart --gin.EVAL_OUTPUT_DIR=/tmp/eval_out \
        [--gin.BENCHMARKS="['mini_bench','mmlu']" --gin.DATA_DIR=../shared/data --gin.SHOTS="(0, 5)"
         --gin.BASELINE_RESULTS=/tmp/eval_before/results.json]

    python -m optiml_jax.eval --gin.CHECKPOINT_PATH=/tmp/optiml_quickstart --gin.EVAL_OUTPUT_DIR=/tmp/eval_out \
        --gin.MIXTURE_OR_TASK_MODULE=my_tasks --gin.MIXTURE_OR_TASK_NAME=my_task \
        [--gin.TASK_FEATURE_LENGTHS="{'inputs': 512, 'targets': 64}" --gin.EVAL_SPLIT=validation]

Suites (BENCHMARKS) write EVAL_OUTPUT_DIR/results.json, predictions JSONL, TensorBoard summaries and report.md
(see optiml_jax.evaluation.outputs). A SeqIO task or mixture (MIXTURE_OR_TASK_NAME, registered by the module
in MIXTURE_OR_TASK_MODULE or --module_import) is evaluated by seqio.Evaluator with the task's own metric_fns
on EVAL_SPLIT; seqio's loggers write EVAL_OUTPUT_DIR/inference_eval/ (<task>-metrics.jsonl,
<task>-<step>.jsonl, TensorBoard under <task>/). BENCHMARKS=None (default): the mini-benchmark unless
MIXTURE_OR_TASK_NAME is set; both set: both run. CHECKPOINT_PATH: a training MODEL_DIR (latest step) or step dir, an
Orbax params dir from the converter, or a Hugging Face OPT directory. TOKENIZER_PATH: a directory with
vocab.json + merges.txt (default: CHECKPOINT_PATH when it has them, else the mini-benchmark tokenizer).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

def register_configurables() -> None:
    import gin

    import optiml_jax.data  # noqa: F401  (its gin configurables must exist before the config is locked)
    import optiml_jax.evaluation  # noqa: F401
    from optiml_jax.cli import gin_setup
    from optiml_jax.evaluation.entry_points import evaluate, infer

    gin_setup.register_configurables()

    with gin.unlock_config():  # idempotent and safe after another CLI locked the config in this process
        if "evaluate" not in _REGISTERED:
            _REGISTERED["evaluate"] = gin.external_configurable(evaluate, "evaluate")
        if "infer" not in _REGISTERED:
            _REGISTERED["infer"] = gin.external_configurable(infer, "infer", denylist=["prompts"])


_REGISTERED: dict = {}


def main(argv: list[str] | None = None) -> int:
    """Exit codes: optiml_jax/cli/errors.py (and --help)."""
    from optiml_jax.cli.errors import run_command

    return run_command(lambda: _main(argv), argv)


def _main(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python -m optiml_jax.eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    from optiml_jax.cli import errors, gin_setup

    errors.with_exit_codes(p)
    gin_setup.add_gin_arguments(p)
    errors.add_verbose_argument(p)
    from optiml_jax.cli.console import setup_console

    setup_console()
    register_configurables()
    args, bindings = gin_setup.parse_command_line(p, argv)
    gin_setup.setup(args, bindings, default_files=["runs/eval.gin"])
    results = _REGISTERED["evaluate"]()  # EvalConfigError (nothing to evaluate, an unknown task, ...) -> exit 2
    from optiml_jax.paths import user_path

    out = user_path(gin_query("EVAL_OUTPUT_DIR"), "EVAL_OUTPUT_DIR")
    for key in sorted(k for k in results if k == "seqio" or k.startswith("seqio_")):
        for task, values in results[key].items():
            shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
            print(f"{task}{'' if key == 'seqio' else ' (' + key[len('seqio_'):] + ')'}: {shown}")
    if "seqio" in results:
        print(f"seqio outputs in {out / 'inference_eval'}")
    if "aggregates" in results:
        print((out / "report.md").read_text())
        overall = {r["shots"]: round(r["score"], 2) for r in results["aggregates"]["overall"]}
        print(f"average over tasks per shots: {overall}; outputs in {out}")
    return 0


def gin_query(macro: str):
    import gin

    return gin.query_parameter(f"{macro}/macro.value")


def console_main() -> None:
    """Console-script entry (setup.py)."""
    sys.exit(main())

if __name__ == "__main__":
    sys.exit(main())
