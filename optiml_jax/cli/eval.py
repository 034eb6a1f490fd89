"""Evaluation entry point, T5X style: `python -m optiml_jax.eval --gin_file=gin/runs/eval.gin --gin.KEY=VALUE ...`.

    python -m optiml_jax.eval --gin_file=gin/runs/eval.gin \
        --gin.CHECKPOINT_PATH=/tmp/optiml_quickstart --gin.EVAL_OUTPUT_DIR=/tmp/eval_out \
        [--gin.BENCHMARKS="['mini_bench','mmlu']" --gin.DATA_DIR=../shared/data --gin.SHOTS="(0, 5)"
         --gin.BASELINE_RESULTS=/tmp/eval_before/results.json]

Writes EVAL_OUTPUT_DIR/results.json, predictions JSONL, TensorBoard summaries and report.md
(see optiml_jax.evaluation.outputs). CHECKPOINT_PATH: a training MODEL_DIR (latest step) or step dir, an
Orbax params dir from the converter, or a Hugging Face OPT directory. TOKENIZER_PATH: a directory with
vocab.json + merges.txt (default: CHECKPOINT_PATH when it has them, else the mini-benchmark tokenizer).
"""

from __future__ import annotations

import argparse
import logging
import os
import pathlib
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
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    register_configurables()
    args, bindings = gin_setup.parse_command_line(p, argv)
    gin_setup.setup(args, bindings, default_files=["runs/eval.gin"])
    results = _REGISTERED["evaluate"]()
    out = pathlib.Path(os.fspath(gin_query("EVAL_OUTPUT_DIR")))
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
