"""Peak RSS of `metaseq-to-hf` on a model-parallel metaseq checkpoint, as a multiple of the largest part.

    python perf/metaseq_convert_rss.py --layers 16 --hidden 512 --parts 2 [--no_release] [--json]

Writes a random float16 metaseq checkpoint (`--parts` files, K,V,Q-fused, as metaseq lays them out) to a temp dir,
then converts it in a fresh process that resets the kernel's peak-RSS mark (/proc/self/clear_refs) after its
imports, and reports the growth of the peak RSS (VmHWM) over that baseline. File-backed pages of the memory-mapped
parts count in RSS, so `--no_release` (pages not handed back after each tensor) shows what the madvise buys.
Linux only (VmHWM, clear_refs).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[1]

CHILD = r"""
import json, os, sys
sys.path.insert(0, {repo!r})
import torch, safetensors.numpy  # imported before the baseline: the growth is the conversion's, not theirs
from optiml_jax.checkpoints import metaseq, metaseq_export
if {no_release!r}:
    metaseq._PageRelease.__call__ = lambda self, tensor: None
def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset VmHWM to the current RSS
base = status("VmRSS")
metaseq_export.metaseq_to_hf({src!r}, {out!r}, max_shard_size={shard!r})
print(json.dumps({{"baseline_rss": base, "peak_rss": status("VmHWM")}}))
"""


def write_checkpoint(d: pathlib.Path, layers: int, hidden: int, parts: int, vocab: int) -> list[pathlib.Path]:
    import torch

    from optiml_jax.checkpoints.hf import tensor_specs
    from optiml_jax.models import OPTConfig
    from optiml_jax.testing.metaseq_files import write_metaseq_checkpoint

    config = OPTConfig(hidden_size=hidden, num_layers=layers, num_heads=hidden // 64, ffn_dim=4 * hidden,
                       vocab_size=vocab, max_position_embeddings=2048)
    gen = torch.Generator().manual_seed(0)
    state = {"model." + s.hf_key: torch.randn(s.hf_shape, generator=gen, dtype=torch.float32).half()
             for s in tensor_specs(config)}
    return write_metaseq_checkpoint(state, config, d, num_parts=parts, name="checkpoint_1_4000")


def measure(layers: int, hidden: int, parts: int, vocab: int = 4096, shard: str = "8MB",
            no_release: bool = False) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        files = write_checkpoint(tmp / "ms", layers, hidden, parts, vocab)
        largest = max(f.stat().st_size for f in files)
        code = CHILD.format(repo=str(REPO), no_release=no_release, src=str(tmp / "ms"), out=str(tmp / "hf"),
                            shard=shard)
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        got = json.loads(r.stdout.strip().splitlines()[-1])
        out_bytes = sum(f.stat().st_size for f in (tmp / "hf").glob("*.safetensors"))
    growth = got["peak_rss"] - got["baseline_rss"]
    return {"layers": layers, "hidden": hidden, "parts": parts, "largest_part_bytes": largest,
            "checkpoint_bytes": largest * parts, "output_bytes": out_bytes, "max_shard_size": shard,
            "release_pages": not no_release, "peak_rss_growth_bytes": growth,
            "growth_over_largest_part": round(growth / largest, 3)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", type=int, default=16)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--parts", type=int, default=2)
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--max_shard_size", default="8MB")
    p.add_argument("--no_release", action="store_true")
    args = p.parse_args()
    print(json.dumps(measure(args.layers, args.hidden, args.parts, args.vocab, args.max_shard_size,
                             args.no_release)))


if __name__ == "__main__":
    main()
