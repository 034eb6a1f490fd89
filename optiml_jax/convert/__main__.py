"""`python -m optiml_jax.convert {hf-to-orbax,orbax-to-hf}`: convert OPT and Llama-family checkpoints from the shell."""

from __future__ import annotations

import argparse
import sys

from optiml_jax.convert.families import load_hf, save_hf
from optiml_jax.convert.hf import CheckpointError
from optiml_jax.convert.orbax_io import load_orbax, save_orbax


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m optiml_jax.convert", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    to_orbax = sub.add_parser("hf-to-orbax", help="Hugging Face directory (OPT, Llama, Mistral, Qwen2) -> Orbax params checkpoint")
    to_orbax.add_argument("--hf_dir", required=True, help="directory with config.json and safetensors/.bin weights")
    to_orbax.add_argument("--out_dir", required=True, help="Orbax checkpoint directory to create")
    to_hf = sub.add_parser("orbax-to-hf", help="Orbax params checkpoint -> Hugging Face directory of its family")
    to_hf.add_argument("--orbax_dir", required=True, help="directory written by hf-to-orbax (or the same layout)")
    to_hf.add_argument("--out_dir", required=True, help="Hugging Face directory to create")
    to_hf.add_argument("--max_shard_size", default=None, help="e.g. 2GB; default: one file up to 5 GB")
    args = parser.parse_args(argv)
    try:
        if args.command == "hf-to-orbax":
            config, params = load_hf(args.hf_dir)
            out = save_orbax(config, params, args.out_dir)
        else:
            config, params = load_orbax(args.orbax_dir)
            out = save_hf(config, params, args.out_dir, max_shard_size=args.max_shard_size)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({config.num_layers} layers, hidden {config.hidden_size}, {config.num_params():,} params)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
