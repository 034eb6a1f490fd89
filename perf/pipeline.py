"""Training-stream cold start and throughput on the quickstart's mixture, against the trainer's consumption.

Measures, for `--mixture` (default `mini_bench_train`, the quickstart's, the paper's recipe) at the quickstart's
shape (16 rows x 256 tokens):
  - cold start: from importing the registrations to the first batch, with every task of the mixture read,
    formatted and tokenized once (since the SeqIO-native data path, through each task's own `get_dataset`);
  - steady state: `get_batch_with_stats(step)` for `--steps` consecutive steps, as packed (non-padding) tokens/s;
  - the trainer's consumption, read from a quickstart run's `MODEL_DIR/metrics/train.jsonl` (`--train_jsonl`,
    median `tokens_per_second` of the logged steps), and the ratio stream / trainer (target: >= 10x).
Public API only, so the same script times any version of the code (PYTHONPATH=<checkout> python perf/pipeline.py).

    python perf/pipeline.py --train_jsonl /tmp/optiml_quickstart/metrics/train.jsonl
    python perf/pipeline.py --steps 3 --batch 2   # smoke test
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from bench_report import write_json


def trainer_tokens_per_s(path: str) -> float | None:
    values = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                rec = json.loads(line)
                if "tokens_per_second" in rec and rec.get("step", 0) > 0:
                    values.append(float(rec["tokens_per_second"]))
    return statistics.median(values) if values else None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mixture", default="mini_bench_train")
    p.add_argument("--length", type=int, default=256)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--train_jsonl", default=None, help="a quickstart run's metrics/train.jsonl (trainer tokens/s)")
    p.add_argument("--json_out", default=None)
    args = p.parse_args(argv)

    t0 = time.perf_counter()
    import optiml_jax.tasks.registrations  # noqa: F401
    from optiml_jax.data import get_train_stream

    t_register = time.perf_counter() - t0
    stream = get_train_stream(args.mixture, args.length, args.batch, seed=0)
    for name in stream.task_names:  # every task read once (what `materialize()` does; older code read lazily)
        for g in stream.groups:
            stream._tokens(name, g)
    stream.get_batch(0)
    t_first = time.perf_counter() - t0
    nonpad = examples = 0
    t1 = time.perf_counter()
    for step in range(1, args.steps + 1):
        batch, st = stream.get_batch_with_stats(step)
        nonpad += int((batch["decoder_segment_ids"] > 0).sum())
        examples += st.examples
    dt = time.perf_counter() - t1
    res = {"mixture": args.mixture, "length": args.length, "batch": args.batch, "steps": args.steps,
           "register_s": round(t_register, 2), "registration_to_first_batch_s": round(t_first, 2),
           "s_per_step": round(dt / args.steps, 4), "packed_tokens_per_s": round(nonpad / dt),
           "examples_per_s": round(examples / dt),
           "packing_efficiency": round(nonpad / (args.steps * args.batch * args.length), 4)}
    if args.train_jsonl:
        trainer = trainer_tokens_per_s(args.train_jsonl)
        res["trainer_tokens_per_s"] = round(trainer) if trainer else None
        res["stream_over_trainer"] = round(nonpad / dt / trainer, 1) if trainer else None
    print(json.dumps(res, indent=1))
    write_json(args.json_out, res, indent=1)
    return res


if __name__ == "__main__":
    main()
