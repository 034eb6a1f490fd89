"""`python -m optiml_jax.convert {hf-to-orbax,orbax-to-hf,metaseq-to-orbax,metaseq-to-hf}`: convert OPT and
Llama-family checkpoints from the shell.

`metaseq-to-orbax` / `metaseq-to-hf --metaseq_path` take a metaseq checkpoint (how OPT and OPT-IML were released): a
consolidated .pt file, or a model-parallel set `<name>-model_part-{0..N-1}.pt` (any part's file or its directory),
merged as metaseq does (optiml_jax/checkpoints/metaseq.py). Files are unpickled with an allow-list only;
`--trust_pickle` lifts it for a file you trust. `--tokenizer_dir` (the OPT tokenizer: vocab.json + merges.txt) is
copied beside the weights, where eval and infer find it, and its special ids (a metaseq checkpoint records none)
are written into the converted config (and `generation_config.json` for metaseq-to-hf).

`orbax-to-hf --orbax_dir` takes anything the checkpoint resolver accepts (optiml_jax.checkpoints.resolve): a
training MODEL_DIR (latest step, or `--step N`), one of its step dirs, or a converter Orbax dir.
An --out_dir that exists and is not empty is refused unless --overwrite, which writes the new checkpoint beside
it and only then replaces the old directory (a failed conversion leaves it as it was).
`orbax-to-hf --tokenizer_dir D` copies D's tokenizer files into the export and writes `generation_config.json` with
D's special ids (bos, eos stop ids, pad), so `transformers.AutoModelForCausalLM` + `AutoTokenizer` load the
directory and `generate` stops where our generation stops; without it the model config's ids are written (a config
saved without them, e.g. a bare `OPTConfig.preset('tiny')`, is refused: pass --tokenizer_dir, whose ids it then
takes)."""

from __future__ import annotations

import argparse
import json

from optiml_jax.paths import local_only
import os
import pathlib
import shutil
import sys


def check_out_dir(out_dir: str, overwrite: bool, *inputs: str) -> pathlib.Path:
    """The output directory, refused when it holds files (unless `overwrite`) or is/contains an input."""
    from optiml_jax.cli import errors

    out = pathlib.Path(local_only(out_dir, "--out_dir", "convert (it writes with safetensors/Orbax here)"))
    for given in inputs:
        src = pathlib.Path(local_only(given, "the input", "convert"))
        if src == out or out in src.parents:
            raise errors.fail(f"--out_dir {out} is (or contains) the input {src}; write somewhere else")
    if out.exists() and not out.is_dir():
        raise errors.fail(f"--out_dir {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise errors.fail(f"--out_dir {out} is not empty ({len(list(out.iterdir()))} entries); pass --overwrite "
                          "to replace it, or choose an empty or new directory")
    return out


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt",
                   "chat_template.jinja")


def export_tokenizer(tokenizer_dir: str, config) -> tuple[object, list[pathlib.Path]]:
    """(special ids, tokenizer files) of `--tokenizer_dir`; a tokenizer with more ids than the model is an error."""
    from optiml_jax.cli import errors
    from optiml_jax.vocabularies.directories import load_vocabulary
    from optiml_jax.vocabularies.special_ids import special_ids_of

    ids = special_ids_of(load_vocabulary(tokenizer_dir))
    if ids.vocab_size is not None and ids.vocab_size > config.vocab_size:
        raise errors.fail(f"--tokenizer_dir {tokenizer_dir}: {ids.vocab_size} ids but the model's vocab_size is "
                          f"{config.vocab_size}: not this model's tokenizer")
    files = [pathlib.Path(tokenizer_dir) / f for f in TOKENIZER_FILES if (pathlib.Path(tokenizer_dir) / f).is_file()]
    return ids, files


def _replace(out: pathlib.Path, write) -> pathlib.Path:
    """write(tmp) into a sibling temp dir, then swap it in for `out` (old contents removed only after success)."""
    tmp = out.with_name(f"{out.name}.converting-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        write(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        old = out.with_name(f"{out.name}.replaced-{os.getpid()}")
        os.rename(out, old)
        os.rename(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, out)
    return out


def main(argv: list[str] | None = None) -> int:
    """Exit codes: optiml_jax/cli/errors.py (and --help)."""
    from optiml_jax.cli.errors import run_command

    return run_command(lambda: _main(argv), argv)


def _main(argv: list[str] | None) -> int:
    from optiml_jax.checkpoints.families import load_hf, save_hf
    from optiml_jax.checkpoints.orbax_params import save_orbax
    from optiml_jax.checkpoints.resolve import load_checkpoint
    from optiml_jax.cli import errors

    parser = errors.with_exit_codes(argparse.ArgumentParser(prog="python -m optiml_jax.convert", description=__doc__))
    sub = parser.add_subparsers(dest="command", required=True)
    to_orbax = sub.add_parser("hf-to-orbax", help="Hugging Face directory (OPT, Llama, Mistral, Qwen2) -> Orbax params checkpoint")
    to_orbax.add_argument("--hf_dir", required=True, help="directory with config.json and safetensors/.bin weights")
    to_orbax.add_argument("--out_dir", required=True, help="Orbax checkpoint directory to create")
    to_hf = sub.add_parser("orbax-to-hf", help="Orbax params checkpoint or training run -> Hugging Face directory of its family")
    to_hf.add_argument("--orbax_dir", required=True,
                       help="a training MODEL_DIR (or MODEL_DIR/checkpoints/<step>) or a dir written by hf-to-orbax")
    to_hf.add_argument("--step", type=int, default=None, help="training runs: the step to export (default: latest)")
    to_hf.add_argument("--out_dir", required=True, help="Hugging Face directory to create")
    to_hf.add_argument("--max_shard_size", default=None, help="e.g. 2GB; default: one file up to 5 GB")
    to_hf.add_argument("--tokenizer_dir", default=None,
                       help="the run's tokenizer (OPT's BPE or any tokenizer.json): copied into --out_dir, its special "
                            "ids written to generation_config.json")
    from_metaseq = {}
    for name, what in (("metaseq-to-orbax", "Orbax params checkpoint"), ("metaseq-to-hf", "Hugging Face directory")):
        m = from_metaseq[name] = sub.add_parser(name, help=f"metaseq OPT checkpoint (consolidated or model-parallel "
                                                            f"parts) -> {what}")
        m.add_argument("--metaseq_path", required=True,
                       help="a consolidated .pt, one part's <name>-model_part-<i>.pt, or the directory holding them")
        m.add_argument("--tokenizer_dir", required=True, help="the OPT tokenizer (vocab.json + merges.txt), copied "
                                                              "into --out_dir")
        m.add_argument("--out_dir", required=True, help=f"{what} to create")
        m.add_argument("--trust_pickle", action="store_true",
                       help="unpickle types outside the allow-list (runs code the file names: trusted files only)")
    from_metaseq["metaseq-to-hf"].add_argument("--max_shard_size", default=None,
                                               help="e.g. 2GB; default 5GB (shards are written as they fill)")
    for p in (to_orbax, to_hf, *from_metaseq.values()):
        errors.with_exit_codes(p)
        p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out_dir")
        errors.add_verbose_argument(p)
    args = parser.parse_args(argv)
    if args.command == "hf-to-orbax":
        out = check_out_dir(args.out_dir, args.overwrite, args.hf_dir)
        config, params = load_hf(args.hf_dir)
        _replace(out, lambda d: save_orbax(config, params, d))
    elif args.command.startswith("metaseq-to-"):
        config = _convert_metaseq(args)
        out = pathlib.Path(local_only(args.out_dir, "--out_dir", "convert"))
    else:
        out = check_out_dir(args.out_dir, args.overwrite, args.orbax_dir)
        config, params = load_checkpoint(args.orbax_dir, args.step, scanned=False)
        ids, files = export_tokenizer(args.tokenizer_dir, config) if args.tokenizer_dir else (None, [])
        if ids is None and config.eos_token_id is None:
            raise errors.fail(f"--orbax_dir {args.orbax_dir}: the model config has no special ids (no eos_token_id) "
                              "to write into config.json / generation_config.json: pass --tokenizer_dir (the "
                              "tokenizer the model was trained in)")
        if ids is not None and config.eos_token_id is None:  # config.json states the tokenizer's ids too
            from optiml_jax.training.model_config import config_with_ids

            config = config_with_ids(config, ids, "--tokenizer_dir's")

        def write(d):
            save_hf(config, params, d, max_shard_size=args.max_shard_size, special_ids=ids)
            for f in files:
                shutil.copy(f, pathlib.Path(d) / f.name)

        _replace(out, write)
    print(f"wrote {out} ({config.num_layers} layers, hidden {config.hidden_size}, {config.num_params():,} params)")
    return 0


def _convert_metaseq(args):
    """metaseq-to-orbax / metaseq-to-hf: checks the tokenizer against the checkpoint's shapes before any weight is
    read; both stream, one merged tensor in memory at a time (checkpoints/metaseq_export.py)."""
    from optiml_jax.checkpoints.metaseq import find_metaseq_files, metaseq_config
    from optiml_jax.checkpoints.metaseq_export import (
        check_tokenizer_dir,
        copy_tokenizer,
        metaseq_to_hf,
        metaseq_to_orbax,
    )

    files = find_metaseq_files(args.metaseq_path)
    out = check_out_dir(args.out_dir, args.overwrite, *map(str, files))
    config = metaseq_config(args.metaseq_path, trust_pickle=args.trust_pickle)
    tokenizer = check_tokenizer_dir(args.tokenizer_dir, config)
    ids, _ = export_tokenizer(str(tokenizer), config)  # the checkpoint has no ids: the tokenizer's are written
    result = {}

    def write(d):
        if args.command == "metaseq-to-hf":
            metaseq_to_hf(args.metaseq_path, d, max_shard_size=args.max_shard_size, trust_pickle=args.trust_pickle)
        else:
            metaseq_to_orbax(args.metaseq_path, d, trust_pickle=args.trust_pickle)
        copy_tokenizer(tokenizer, d)
        result["config"] = _record_tokenizer_ids(pathlib.Path(d), args.command == "metaseq-to-hf", ids)

    _replace(out, write)
    print(f"read {len(files)} metaseq file{'s' if len(files) > 1 else ''} ({files[0].name}{', ...' if len(files) > 1 else ''})")
    return result["config"]


def _record_tokenizer_ids(directory: pathlib.Path, hf: bool, ids):
    """A metaseq checkpoint records no special ids (its dictionary is not in it): the converted directory's config
    takes the tokenizer's (`--tokenizer_dir`), and a Hugging Face export its `generation_config.json`, so the output
    states the ids its tokenizer files have. Returns the config."""
    from optiml_jax.checkpoints.families import GENERATION_CONFIG, generation_config
    from optiml_jax.checkpoints.hf import config_from_hf
    from optiml_jax.models import config_from_dict
    from optiml_jax.training.model_config import config_with_ids

    path = directory / "config.json"
    raw = json.loads(path.read_text())
    config = config_with_ids(config_from_hf(raw) if hf else config_from_dict(raw), ids, "--tokenizer_dir's")
    if hf:
        raw.update({k: getattr(config, k) for k in ("bos_token_id", "eos_token_id", "pad_token_id")})
        path.write_text(json.dumps(raw, indent=2, sort_keys=True))
        (directory / GENERATION_CONFIG).write_text(json.dumps(generation_config(config, ids), indent=2, sort_keys=True))
    else:
        path.write_text(config.to_json())
    return config


def console_main() -> None:
    """Console-script entry (setup.py)."""
    sys.exit(main())

if __name__ == "__main__":
    sys.exit(main())
