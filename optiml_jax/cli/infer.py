"""Generate from a checkpoint: `python -m optiml_jax.infer --gin.CHECKPOINT_PATH=... --prompt "..."`.

    python -m optiml_jax.infer --gin.CHECKPOINT_PATH=/tmp/optiml_quickstart --prompt "Reverse: abc\\nAnswer:"
    python -m optiml_jax.infer --gin_file=gin/runs/infer.gin --gin.CHECKPOINT_PATH=... --prompts_file=prompts.txt

One prompt per line in --prompts_file (use a literal "\\n" inside a line for a newline). Greedy by default;
`--gin.TEMPERATURE=0.7` samples (seeded by `--gin.SEED`). Prints one generation per prompt (JSON lines with --jsonl).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python -m optiml_jax.infer", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    from optiml_jax.cli import gin_setup

    gin_setup.add_gin_arguments(p)
    p.add_argument("--prompt", action="append", default=[], help="a prompt (repeatable)")
    p.add_argument("--prompts_file", help="a file with one prompt per line")
    p.add_argument("--jsonl", action="store_true", help="print {'prompt', 'generation'} JSON lines")
    try:
        args, bindings = gin_setup.parse_command_line(p, argv)
    except gin_setup.GinConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    prompts = list(args.prompt)
    if args.prompts_file:
        with open(args.prompts_file, encoding="utf-8") as f:
            prompts += [line.rstrip("\n").replace("\\n", "\n") for line in f if line.strip()]
    if not prompts:
        print("error: give --prompt TEXT (repeatable) or --prompts_file FILE", file=sys.stderr)
        return 2
    from optiml_jax.cli.console import setup_console

    setup_console(logging.WARNING)
    from optiml_jax.cli import eval as eval_cli

    eval_cli.register_configurables()
    try:
        gin_setup.setup(args, bindings, default_files=["runs/infer.gin"])
    except gin_setup.GinConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    outputs = eval_cli._REGISTERED["infer"](prompts=prompts)
    for i, (prompt, out) in enumerate(zip(prompts, outputs)):
        if args.jsonl:
            print(json.dumps({"prompt": prompt, "generation": out}))
        else:  # readable even when a model stops at once (an empty generation is shown as such)
            print(f"{'' if i == 0 else chr(10)}>>> {prompt}\n{out if out.strip() else '(empty: the model emitted </s> first)'}")
    return 0


def console_main() -> None:
    """Console-script entry (setup.py)."""
    sys.exit(main())

if __name__ == "__main__":
    sys.exit(main())
