"""Generate from a checkpoint: `python -m optiml_jax.infer --gin.CHECKPOINT_PATH=... --prompt "..."`.

    python -m optiml_jax.infer --gin.CHECKPOINT_PATH=/tmp/optiml_quickstart --prompt "Reverse: abc\\nAnswer:"
    python -m optiml_jax.infer --gin_file=gin/runs/infer.gin --gin.CHECKPOINT_PATH=... --prompts_file=prompts.txt

In --prompt and in --prompts_file (one prompt per line) the two characters "\\n" are a newline, as in the example
above, and "\\\\" is a backslash. Greedy by default;
`--gin.TEMPERATURE=0.7` samples (seeded by `--gin.SEED`). Prints one generation per prompt (JSON lines with --jsonl).
A prompt longer than the model's positions (minus MAX_NEW_TOKENS kept free for the answer) is cut from the
left; the command says so on stderr, with how many tokens were dropped.
"""

from __future__ import annotations

import json
import logging
import sys


def prompt_truncations(prompts: list[str], checkpoint_path: str, tokenizer_dir: str | None,
                       max_new_tokens: int) -> list[str]:
    """One message per prompt that the model will cut from the left (it keeps `[bos] + prompt` (no bos for a family
    without one) within max_position_embeddings - max_new_tokens positions; see DecoderOnlyModel.encode_prompt)."""
    from optiml_jax.checkpoints.resolve import resolve
    from optiml_jax.evaluation.vocabulary import resolve_tokenizer
    from optiml_jax.vocabularies.special_ids import special_ids_of

    config = resolve(checkpoint_path).saved_config()
    if config is None:
        return []
    vocab = resolve_tokenizer(tokenizer_dir, checkpoint_path)
    room = config.max_position_embeddings - int(max_new_tokens)
    bos = special_ids_of(vocab).bos
    prefix = 0 if bos is None else 1
    bos_note = "" if bos is None else f" (+ {vocab.tokenizer.id_to_token(bos)})"
    out = []
    for i, prompt in enumerate(prompts):
        n = prefix + len(vocab.encode(prompt))
        if room >= 1 and n > room:
            out.append(f"prompt {i + 1}: {n - prefix} tokens{bos_note} do not fit the model's {config.max_position_embeddings} "
                       f"positions with MAX_NEW_TOKENS = {max_new_tokens} kept for the answer: truncated from the left, "
                       f"dropping its first {n - room} tokens and keeping the last {room - prefix}")
    return out


def unescape_prompt(text: str) -> str:
    """`\\n` -> newline and `\\\\` -> backslash (a shell cannot type a newline inside --prompt easily); any other
    backslash is kept as written."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in "n\\":
            out.append("\n" if text[i + 1] == "n" else "\\")
            i += 2
            continue
        out.append(text[i])
        i += 1
    return "".join(out)


def main(argv: list[str] | None = None) -> int:
    """Exit codes: optiml_jax/cli/errors.py (and --help)."""
    from optiml_jax.cli.errors import run_command

    return run_command(lambda: _main(argv), argv)


def _main(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    from optiml_jax.cli import errors, gin_setup, launch

    p = launch.command_parser("python -m optiml_jax.infer", __doc__)
    p.add_argument("--prompt", action="append", default=[], help="a prompt (repeatable)")
    p.add_argument("--prompts_file", help="a file with one prompt per line")
    p.add_argument("--jsonl", action="store_true", help="print {'prompt', 'generation'} JSON lines")
    args, bindings = gin_setup.parse_command_line(p, argv)
    prompts = [unescape_prompt(p) for p in args.prompt]
    if args.prompts_file:
        with open(args.prompts_file, encoding="utf-8") as f:
            prompts += [unescape_prompt(line.rstrip("\n")) for line in f if line.strip()]
    if not prompts:
        raise errors.fail("give --prompt TEXT (repeatable) or --prompts_file FILE")
    from optiml_jax.cli.console import setup_console

    setup_console(logging.WARNING)
    from optiml_jax.cli import eval as eval_cli

    eval_cli.register_configurables()
    gin_setup.setup(args, bindings, default_files=["runs/infer.gin"], command="infer")
    launch.init_distributed(args)
    import gin

    bound = gin.get_bindings("infer", resolve_references=True)
    for message in prompt_truncations(prompts, bound["checkpoint_path"], bound.get("tokenizer_dir"),
                                      int(bound.get("max_new_tokens", 256))):
        print(f"warning: {message}", file=sys.stderr)
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
