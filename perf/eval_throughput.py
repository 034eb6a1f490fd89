"""Evaluation throughput on CPU: optiml_jax vs lm-evaluation-harness's Hugging Face backend / HF `generate`.

Same weights on both sides: a randomly initialised OPT (default the 125m config, vocab 50272) exported with
`save_hf_opt` plus the real OPT tokenizer (../shared/data/opt_tokenizer), float32.

1. Scoring (rank classification): MMLU-style multiple-choice requests built from real MMLU test questions
   (../shared/data/mmlu), each question with its 4 answer *texts* as continuations (multi-token, so the HF
   backend's one-token-continuation shortcut does not apply). Both sides get the same lm-eval `Instance`s
   through `LM.loglikelihood`: ours (`optiml_jax.evaluation.lm_eval_adapter.OptimlJaxLM`, prompt encoded
   once per question via the KV cache) and lm-eval's `HFLM` (`--model hf`, batch_size as given).
   Reported: examples/s (one example = one question with its 4 options) after a warm-up pass
   (JAX compilation reported separately).
2. Greedy generation: a batch of prompts, `--new_tokens` new tokens each; ours = `optiml_jax.models.generate`
   (KV cache, one jitted scan) vs `transformers` `model.generate(do_sample=False, min_new_tokens=max_new_tokens)`
   (KV cache on). Reported: generated tokens/s.

Runs alternate (ours, theirs, ours, theirs) so machine noise hits both; the best repeat counts.

    python perf/eval_throughput.py                       # 125m, the recorded numbers
    python perf/eval_throughput.py --config tiny --examples 8 --new_tokens 8 --repeats 1   # smoke test
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import pathlib
import shutil
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def build_export(config_name: str, out: pathlib.Path):
    import jax

    from optiml_jax.checkpoints import save_hf_opt
    from optiml_jax.models import OPTConfig, init_params

    config = OPTConfig.preset(config_name, dropout_rate=0.0)
    params = init_params(config, jax.random.key(0))
    save_hf_opt(config, params, out)
    tok = DATA / "opt_tokenizer"
    for f in ("vocab.json", "merges.txt"):
        shutil.copy(tok / f, out / f)
    special = {"bos_token": "</s>", "eos_token": "</s>", "unk_token": "</s>", "pad_token": "<pad>"}
    (out / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "GPT2Tokenizer", "add_bos_token": True, "add_prefix_space": False, **special}))
    (out / "special_tokens_map.json").write_text(json.dumps(special))
    return config


def mmlu_requests(n: int):
    from lm_eval.api.instance import Instance

    rows = []
    for path in sorted((DATA / "mmlu" / "test").glob("*.csv")):
        with open(path, newline="", encoding="utf-8") as f:
            rows += list(csv.DictReader(f))
        if len(rows) >= n:
            break
    reqs = []
    for i, row in enumerate(rows[:n]):
        ctx = f"Question: {row['question'].strip()}\nAnswer:"
        for j in range(4):
            reqs.append(Instance(request_type="loglikelihood", doc={}, arguments=(ctx, " " + row[f"choice{j}"].strip()),
                                 idx=4 * i + j))
    return reqs


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="125m")
    p.add_argument("--examples", type=int, default=64, help="MMLU questions (x4 options) to score")
    p.add_argument("--batch_size", type=int, default=16, help="HF: requests per forward; ours: prompts per call")
    p.add_argument("--gen_batch", type=int, default=8)
    p.add_argument("--prompt_tokens", type=int, default=64)
    p.add_argument("--new_tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--json", help="write the numbers here")
    args = p.parse_args(argv)

    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    import optiml_jax.evaluation.lm_eval_adapter as adapter
    from lm_eval.models.huggingface import HFLM

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="eval_throughput_"))
    config = build_export(args.config, tmp)
    ours = adapter.OptimlJaxLM(checkpoint=str(tmp), batch_size=max(1, args.batch_size // 4))
    hf = HFLM(pretrained=str(tmp), dtype="float32", device="cpu", batch_size=args.batch_size)
    reqs = mmlu_requests(args.examples)
    n_examples = len(reqs) // 4

    # ---- scoring --------------------------------------------------------------------------------------------
    compile_s, _ = timed(lambda: ours.loglikelihood(reqs, disable_tqdm=True))
    ours_s, hf_s, max_diff = [], [], 0.0
    for _ in range(args.repeats):
        t, a = timed(lambda: ours.loglikelihood(reqs, disable_tqdm=True))
        ours_s.append(t)
        t, b = timed(lambda: hf.loglikelihood(reqs, disable_tqdm=True))
        hf_s.append(t)
        max_diff = max(max_diff, max(abs(x[0] - y[0]) for x, y in zip(a, b)))
    score = {"examples": n_examples, "requests": len(reqs), "ours_examples_per_s": n_examples / min(ours_s),
             "hf_examples_per_s": n_examples / min(hf_s), "ours_first_pass_incl_compile_s": compile_s,
             "max_abs_loglik_diff": max_diff}
    score["speedup"] = score["ours_examples_per_s"] / score["hf_examples_per_s"]

    # ---- greedy generation ----------------------------------------------------------------------------------
    import jax

    from optiml_jax.models import generate

    rng = np.random.default_rng(0)
    prompts = np.concatenate([np.full((args.gen_batch, 1), 2), rng.integers(4, 50000, (args.gen_batch, args.prompt_tokens - 1))],
                             axis=1).astype(np.int32)
    model = ours.model
    run_ours = lambda: np.asarray(jax.block_until_ready(generate(model.config, model.params, prompts,  # noqa: E731
                                                                 max_new_tokens=args.new_tokens, eos_id=-1)))
    gen_compile_s, _ = timed(run_ours)
    hf_model = hf.model.eval()
    ids = torch.tensor(prompts, dtype=torch.long)

    def run_hf():
        with torch.no_grad():
            return hf_model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=args.new_tokens,
                                     min_new_tokens=args.new_tokens, do_sample=False, use_cache=True, pad_token_id=1)

    timed(run_hf)  # warm-up
    g_ours, g_hf = [], []
    for _ in range(args.repeats):
        t, a = timed(run_ours)
        g_ours.append(t)
        t, b = timed(run_hf)
        g_hf.append(t)
    same = float(np.mean(a == b[:, prompts.shape[1]:].numpy()))
    tokens = args.gen_batch * args.new_tokens
    gen = {"batch": args.gen_batch, "prompt_tokens": args.prompt_tokens, "new_tokens": args.new_tokens,
           "ours_tokens_per_s": tokens / min(g_ours), "hf_tokens_per_s": tokens / min(g_hf),
           "ours_compile_s": gen_compile_s, "fraction_same_tokens": same}
    gen["speedup"] = gen["ours_tokens_per_s"] / gen["hf_tokens_per_s"]

    result = {"config": args.config, "threads": args.threads, "scoring": score, "generation": gen,
              "jax": jax.__version__, "torch": torch.__version__}
    print(json.dumps(result, indent=2))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=2))
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
