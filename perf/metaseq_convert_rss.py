"""Peak RSS of `metaseq-to-hf` / `metaseq-to-orbax` on a model-parallel metaseq checkpoint, against the largest
part and the largest merged float32 tensor.

    python perf/metaseq_convert_rss.py --layers 16 --hidden 512 --parts 2 [--to orbax] [--no_release]

Writes a random float16 metaseq checkpoint (`--parts` files, K,V,Q-fused, as metaseq lays them out) to a temp dir,
then converts it in a fresh process that resets the kernel's peak-RSS mark (/proc/self/clear_refs) after its
imports, and reports the growth of the peak RSS (VmHWM) over that baseline, and the converting process's
`ru_maxrss` (`resource.getrusage(RUSAGE_CHILDREN)` of a small launcher; it cannot be reset, so it includes the
imports' peak and its growth over the baseline is an upper bound). File-backed pages of the memory-mapped parts count in RSS, so
`--no_release` (pages not handed back after each tensor) shows what the madvise buys. Linux only (clear_refs).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[1]

# ru_maxrss of a process starts at the RSS of whatever it was spawned from (the kernel carries the spawning
# process's high-water mark over exec), so the converter is started by this small launcher, not by the caller
# (pytest, or the process that just wrote the checkpoint), and the launcher reports its child's ru_maxrss.
LAUNCHER = r"""
import resource, subprocess, sys
r = subprocess.run([sys.executable, "-c", sys.stdin.read()], capture_output=True, text=True)
sys.stderr.write(r.stderr)
print(r.stdout.strip().splitlines()[-1] if r.returncode == 0 and r.stdout.strip() else "")
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
sys.exit(r.returncode)
"""

CHILD = r"""
import json, os, resource, sys
sys.path.insert(0, {repo!r})
import torch, safetensors.numpy  # imported before the baseline: the growth is the conversion's, not theirs
from optiml_jax.checkpoints import metaseq, metaseq_export
if {to!r} == "orbax":
    import jax, orbax.checkpoint, flax.linen
    from optiml_jax.checkpoints import orbax_params
    from optiml_jax.models import OPTConfig
    orbax_params.abstract_params(OPTConfig(hidden_size=64, num_heads=4, num_layers=1, ffn_dim=64, vocab_size=64))
if {no_release!r}:
    metaseq._PageRelease.__call__ = lambda self, tensor: None
def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset VmHWM to the current RSS
base = status("VmRSS")
if {to!r} == "orbax":
    metaseq_export.metaseq_to_orbax({src!r}, {out!r})
else:
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
            no_release: bool = False, to: str = "hf") -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        files = write_checkpoint(tmp / "ms", layers, hidden, parts, vocab)
        largest = max(f.stat().st_size for f in files)
        code = CHILD.format(repo=str(REPO), no_release=no_release, src=str(tmp / "ms"), out=str(tmp / "out"),
                            shard=shard, to=to)
        r = subprocess.run([sys.executable, "-c", LAUNCHER], input=code, capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(f"conversion failed:\n{r.stderr[-3000:]}")
        *_, line, ru_maxrss = r.stdout.strip().splitlines()
        got = dict(json.loads(line), ru_maxrss=int(ru_maxrss))
        out_bytes = sum(f.stat().st_size for f in (tmp / "out").rglob("*") if f.is_file())
    growth = got["peak_rss"] - got["baseline_rss"]
    ru_growth = got["ru_maxrss"] - got["baseline_rss"]
    tensor = 4 * max(vocab * hidden, 4 * hidden * hidden)  # the largest merged float32 tensor: embedding or fc1
    return {"to": to, "layers": layers, "hidden": hidden, "vocab": vocab, "parts": parts,
            "largest_part_bytes": largest, "checkpoint_bytes": largest * parts, "largest_tensor_bytes": tensor,
            "output_bytes": out_bytes, "max_shard_size": shard if to == "hf" else None,
            "release_pages": not no_release, "baseline_rss_bytes": got["baseline_rss"],
            "peak_rss_growth_bytes": growth, "ru_maxrss_bytes": got["ru_maxrss"],
            "ru_maxrss_growth_bytes": ru_growth,
            "growth_over_largest_part": round(growth / largest, 3),
            "growth_over_largest_tensor": round(growth / tensor, 3),
            "ru_maxrss_growth_over_largest_part": round(ru_growth / largest, 3)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", type=int, default=16)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--parts", type=int, default=2)
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--max_shard_size", default="8MB")
    p.add_argument("--no_release", action="store_true")
    p.add_argument("--to", choices=("hf", "orbax"), default="hf", help="metaseq-to-hf or metaseq-to-orbax")
    args = p.parse_args()
    print(json.dumps(measure(args.layers, args.hidden, args.parts, args.vocab, args.max_shard_size,
                             args.no_release, args.to)))


if __name__ == "__main__":
    main()
