"""Greedy decode throughput on CPU for the Llama family: `optiml_jax.models.generate` vs Hugging Face `generate`.

Same weights on both sides: a random LlamaConfig (default the 125m-shaped GQA config of `llama_train_step_cpu.py`:
12 x 768, 12 query / 4 key-value heads, vocab 32000) saved with `save_hf_llama` and loaded by
`transformers.LlamaForCausalLM.from_pretrained`, float32. A batch of `--batch` prompts of `--prompt_tokens` random
ids, `--new_tokens` new tokens each; ours = one jitted prefill + scan over a KV cache (grouped-query: the cache
holds the key-value heads only); theirs = `model.generate(do_sample=False, min_new_tokens=N, max_new_tokens=N)`
(KV cache on, `torch.set_num_threads(--threads)`). Runs alternate (ours, theirs, ...) after a warm-up of each (our
compilation is reported separately); the best repeat counts. The generated ids are compared (same weights,
greedy: they must agree, up to float ties).

    python perf/llama_decode_cpu.py                                  # the recorded numbers
    python perf/llama_decode_cpu.py --config tiny --new_tokens 8 --repeats 1   # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))


def _parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="125m", help="'125m' (llama_train_step_cpu's shape) or a LlamaConfig preset")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--prompt_tokens", type=int, default=64)
    p.add_argument("--new_tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--json", default=None)
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = _parse_args(argv)
    import jax
    import numpy as np
    import torch
    import transformers

    from llama_train_step_cpu import make_config
    from optiml_jax.checkpoints.hf_llama import save_hf_llama
    from optiml_jax.models import generate, init_model_params

    torch.set_num_threads(args.threads)
    config = make_config(args.config, "auto").replace(dtype="float32", eos_token_id=None)  # no early stop
    params = init_model_params(config, jax.random.key(0))
    with tempfile.TemporaryDirectory() as d:
        save_hf_llama(config, params, d)
        hf = transformers.LlamaForCausalLM.from_pretrained(d, torch_dtype=torch.float32).eval()
    prompts = np.random.default_rng(3).integers(4, config.vocab_size, (args.batch, args.prompt_tokens), dtype=np.int32)
    n = args.new_tokens

    def ours():
        return np.asarray(jax.block_until_ready(generate(config, params, prompts, max_new_tokens=n, eos_id=-1)))

    def theirs():
        with torch.no_grad():
            out = hf.generate(torch.from_numpy(prompts.astype(np.int64)), attention_mask=torch.ones(prompts.shape,
                              dtype=torch.long), do_sample=False, min_new_tokens=n, max_new_tokens=n,
                              pad_token_id=0)
        return out[:, prompts.shape[1]:].numpy()

    t0 = time.perf_counter()
    mine = ours()
    compile_s = time.perf_counter() - t0
    ref = theirs()
    best = {"ours": float("inf"), "theirs": float("inf")}
    for _ in range(args.repeats):
        for name, fn in (("ours", ours), ("theirs", theirs)):
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    tokens = args.batch * n
    result = {
        "config": args.config, "batch": args.batch, "prompt_tokens": args.prompt_tokens, "new_tokens": n,
        "threads": args.threads, "first_call_s": round(compile_s, 2),
        "ours_tokens_per_s": round(tokens / best["ours"], 1), "hf_tokens_per_s": round(tokens / best["theirs"], 1),
        "ratio": round(best["theirs"] / best["ours"], 2),
        "same_tokens_fraction": float(np.mean(mine == ref)),
    }
    print(json.dumps(result, indent=1))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
