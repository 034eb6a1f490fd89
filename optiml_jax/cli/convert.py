"""`python -m optiml_jax.convert {hf-to-orbax,orbax-to-hf}`: convert OPT and Llama-family checkpoints from the shell.

`orbax-to-hf --orbax_dir` takes anything the checkpoint resolver accepts (optiml_jax.checkpoints.resolve): a
training MODEL_DIR (latest step, or `--step N`), one of its step dirs, or a converter Orbax dir."""

from __future__ import annotations

import argparse
import sys

from optiml_jax.checkpoints.families import load_hf, save_hf
from optiml_jax.checkpoints.hf import CheckpointError
from optiml_jax.checkpoints.orbax_params import save_orbax
from optiml_jax.checkpoints.resolve import CheckpointPathError, load_checkpoint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m optiml_jax.convert", description=__doc__)
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
    args = parser.parse_args(argv)
    try:
        if args.command == "hf-to-orbax":
            config, params = load_hf(args.hf_dir)
            out = save_orbax(config, params, args.out_dir)
        else:
            config, params = load_checkpoint(args.orbax_dir, args.step, scanned=False)
            out = save_hf(config, params, args.out_dir, max_shard_size=args.max_shard_size)
    except (CheckpointError, CheckpointPathError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({config.num_layers} layers, hidden {config.hidden_size}, {config.num_params():,} params)")
    return 0


def console_main() -> None:
    """Console-script entry (setup.py)."""
    sys.exit(main())

if __name__ == "__main__":
    sys.exit(main())
