"""Training entry point, T5X style: `python -m optiml_jax.train --gin_file=... --gin.KEY=VALUE ...`.

    python -m optiml_jax.train --gin_file=gin/runs/finetune.gin --gin_file=gin/models/opt_1_3b.gin \
        --gin.MODEL_DIR=/tmp/optiml_1_3b --gin.MIXTURE_OR_TASK_NAME=mini_bench_train \
        --gin.INITIAL_CHECKPOINT_PATH=/ckpts/opt-1.3b

Flags shared by every command (`--gin_file`, `--gin.KEY=VALUE`, `--gin_bindings`, `--gin_search_paths`,
`--module_import`, `--tfds_data_dir`, `--seqio_additional_cache_dirs`): optiml_jax/cli/gin_setup.py. Running the
same command again resumes from the newest intact checkpoint in MODEL_DIR (a damaged one is reported and moved to
MODEL_DIR/checkpoints_corrupt/). A run holds MODEL_DIR/run.lock while it trains: a second trainer on the same
MODEL_DIR exits with code 4. A macro no binding reads (a typo such as --gin.LEARNIG_RATE=0.1) is an error.

Multi-host: pass `--distributed` (or T5X's `--multiprocess_gpu`) on every host (TPU pod slices, SLURM, Open MPI
and Kubernetes are auto-detected by `jax.distributed.initialize()`), or give `--coordinator_address`,
`--num_processes`/`--process_count` and `--process_id`/`--process_index` explicitly. See the README's
"Launching training runs".
"""

from __future__ import annotations

import argparse
import sys


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    from optiml_jax.cli import gin_setup, launch

    p = launch.command_parser("python -m optiml_jax.train", __doc__)
    p.add_argument("--no_progress", action="store_true", help="no tqdm bar (logs only)")
    return gin_setup.parse_command_line(p, argv)


def main(argv: list[str] | None = None) -> int:
    """Exit codes: optiml_jax/cli/errors.py (and --help)."""
    from optiml_jax.cli.errors import run_command

    return run_command(lambda: _main(argv), argv)


def _main(argv: list[str] | None) -> int:
    from optiml_jax.cli import gin_setup as gin_config

    args, bindings = parse_args(sys.argv[1:] if argv is None else argv)
    if args.no_progress:
        bindings = [*bindings, "ExecutionConfig.progress = False"]
    from optiml_jax.cli.console import setup_console

    setup_console()
    gin_config.setup(args, bindings, command="train")  # every configuration error is raised here, before any device work
    gin_config.check_training_data()  # MIXTURE_OR_TASK_NAME resolves (OPT-IML Bench registered on demand), or exit 2
    from optiml_jax.cli.launch import init_distributed

    init_distributed(args)
    import jax

    from optiml_jax.training.train_loop import summarize_eval

    kwargs = {"setup_callback": gin_config.write_configs,
              "model_config_origin": gin_config.model_config_origin(args, bindings)}
    result = gin_config.configured_train()(**kwargs)
    if jax.process_index() == 0:
        gin_config.write_configs(result.model_dir)
        if result.restored_from is not None and not result.history:  # restored at TRAIN_STEPS: nothing ran
            print(completed_run_summary(result.model_dir, result.start_step))
        elif result.history:
            last = result.history[-1]
            print(f"trained steps {result.start_step}..{result.final_step}: final loss {last['loss']:.4f}")
        if result.skipped_total:
            from optiml_jax.training.train_loop import step_ranges

            print(f"skipped {result.skipped_total} non-finite step(s) in all (ON_NONFINITE = 'skip'); this run: "
                  f"{step_ranges(result.skipped_steps)}")
        for s in result.set_aside:
            print(f"damaged checkpoint of step {s['step']} moved to {s['moved_to']}: {s['reason']}")
        if result.eval_results:
            print("eval loss per split:\n" + summarize_eval(result.eval_results))
    return 0


def completed_run_summary(model_dir, step: int) -> str:
    """What rerunning a finished run prints: that it is complete, and its final evaluation table again."""
    from optiml_jax.paths import user_path

    lines = [f"{model_dir} already holds the finished run (step {step}); nothing left to train. "
             "Raise --gin.TRAIN_STEPS to continue it, or choose a new --gin.MODEL_DIR."]
    report = user_path(model_dir, "MODEL_DIR") / "eval" / f"step_{step}" / "report.md"
    if report.is_file():
        lines += ["", f"Final evaluation ({report}):", "", report.read_text()]
    return "\n".join(lines)


def console_main() -> None:
    """`optiml-train` console script."""
    sys.exit(main())


if __name__ == "__main__":
    console_main()
