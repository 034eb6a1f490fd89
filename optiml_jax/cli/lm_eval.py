"""`lm_eval` CLI with the optiml_jax backend registered: same arguments as `lm_eval`.

    python -m optiml_jax.cli.lm_eval run --model optiml_jax --model_args checkpoint=DIR \
        --tasks TASK [--include_path TASK_DIR] [--device cpu]

Why a wrapper: lm-eval 0.4.13 discovers models only from its own `MODEL_MAPPING` (no entry-point group),
so a third-party backend must be imported before the CLI parses `--model`.
"""

from __future__ import annotations

import sys


def main() -> None:
    import optiml_jax.evaluation.lm_eval_adapter  # noqa: F401  (registers --model optiml_jax)
    from lm_eval.__main__ import cli_evaluate

    cli_evaluate()


if __name__ == "__main__":
    sys.exit(main())
