"""Evaluation entry point, T5X style: `python -m optiml_jax.eval --gin_file=gin/runs/eval.gin --gin.KEY=VALUE ...`.

    python -m optiml_jax.eval --gin_file=gin/runs/eval.gin \
        --gin.CHECKPOINT_PATH=/tmp/optiml_quickstart --gin.EVAL_OUTPUT_DIR=/tmp/eval_out \
        [--gin.SUITES="['mini_bench','mmlu']" --gin.DATA_DIR=../shared/data --gin.SHOTS="(0, 5)"
         --gin.BASELINE_RESULTS=/tmp/eval_before/results.json]

    python -m optiml_jax.eval --gin.CHECKPOINT_PATH=/tmp/optiml_quickstart --gin.EVAL_OUTPUT_DIR=/tmp/eval_out \
        --gin.MIXTURE_OR_TASK_MODULE=my_tasks --gin.MIXTURE_OR_TASK_NAME=my_task \
        [--gin.TASK_FEATURE_LENGTHS="{'inputs': 512, 'targets': 64}" --gin.EVAL_SPLIT=validation]

Suites (SUITES) write EVAL_OUTPUT_DIR/results.json, predictions JSONL, TensorBoard summaries and report.md
(see optiml_jax.evaluation.outputs). A SeqIO task or mixture (MIXTURE_OR_TASK_NAME, registered by the module
in MIXTURE_OR_TASK_MODULE or --module_import) is evaluated by seqio.Evaluator with the task's own metric_fns
on EVAL_SPLIT; seqio's loggers write EVAL_OUTPUT_DIR/inference_eval/ (<task>-metrics.jsonl,
<task>-<step>.jsonl, TensorBoard under <task>/). SUITES=None (default): the mini-benchmark unless
MIXTURE_OR_TASK_NAME is set; both set: both run. CHECKPOINT_PATH: a training MODEL_DIR (latest step) or step dir, an
Orbax params dir from the converter, a Hugging Face directory (OPT, Llama, Mistral, Qwen2), or a metaseq checkpoint
(.pt file or a dir of *-model_part-<i>.pt). TOKENIZER_DIR: a directory with vocab.json + merges.txt or tokenizer.json
(default: CHECKPOINT_PATH when it has them, else the mini-benchmark tokenizer; a metaseq checkpoint needs it).
"""

from __future__ import annotations

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
    from optiml_jax.cli import gin_setup, launch

    p = launch.command_parser("python -m optiml_jax.eval", __doc__)
    from optiml_jax.cli.console import setup_console

    setup_console()
    register_configurables()
    args, bindings = gin_setup.parse_command_line(p, argv)
    gin_setup.setup(args, bindings, default_files=["runs/eval.gin"], command="eval")
    check_settings_apply(bindings)
    launch.init_distributed(args)
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


# Macros that only the suites read, and macros that only a named SeqIO task's evaluation reads: one set on the
# command line for an evaluation that does not run is an error, not a setting silently ignored.
SUITE_MACROS = ("SHOTS", "DATA_DIR", "BASELINE_RESULTS", "RANK_NORMALIZATION")
SEQIO_TASK_MACROS = ("SEQIO_SHOTS", "EVAL_SPLIT", "TASK_FEATURE_LENGTHS", "USE_CACHED_TASKS")


def check_settings_apply(bindings) -> None:
    from optiml_jax.cli.gin_setup import GinConfigError, binding_names
    from optiml_jax.evaluation.entry_points import chosen_suites

    given = binding_names(bindings)
    task = gin_query("MIXTURE_OR_TASK_NAME")
    suites = chosen_suites(gin_query("SUITES"), task)
    if not suites:
        unused = [m for m in SUITE_MACROS if m in given]
        if unused:
            raise GinConfigError(
                f"{', '.join(unused)} set, but no evaluation suite runs (MIXTURE_OR_TASK_NAME = {task!r} is evaluated "
                "by its own metric_fns and SUITES is unset): set SUITES to run the suites too, or use "
                "SEQIO_SHOTS for the task's k-shot evaluation")
    if not task:
        unused = [m for m in SEQIO_TASK_MACROS if m in given]
        if unused:
            raise GinConfigError(f"{', '.join(unused)} set, but they apply to the SeqIO task or mixture named by "
                                 "MIXTURE_OR_TASK_NAME, and none is set")


def gin_query(macro: str):
    import gin

    return gin.query_parameter(f"{macro}/macro.value")


def console_main() -> None:
    """Console-script entry (setup.py)."""
    sys.exit(main())

if __name__ == "__main__":
    sys.exit(main())
