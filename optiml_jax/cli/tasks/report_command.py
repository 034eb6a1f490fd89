"""`report NAME`: a mixture's effective rates (per collection and task), packing efficiency, truncations; over the
row length, batch size and seed of the gin configuration when one is given (`run_settings`).

The rates are shares of *examples* (as seqio's are): `packed` is each task's share of the examples the packed
rows hold, flagged `!` when it is off its rate by more than 3 binomial sigma (plus what the stream still carries
into the next step); `tokens` is its share of the packed tokens, which long-example tasks dominate."""

from __future__ import annotations

import collections

HELP = "mixture report: effective rates per collection/task, packing efficiency and truncation counts"


def add_arguments(parser) -> None:
    parser.add_argument("name", nargs="?", default=None,
                        help="task or mixture name (default: the gin configuration's MIXTURE_OR_TASK_NAME)")
    parser.add_argument("--length", type=int, default=None,
                        help="packed row length (default: the sum of the configuration's TASK_FEATURE_LENGTHS, "
                             "else 2048); must agree with TASK_FEATURE_LENGTHS when a --gin_file sets it")
    parser.add_argument("--batch_size", type=int, default=None,
                        help="global batch in rows (default: the configuration's BATCH_SIZE, else 8)")
    parser.add_argument("--steps", type=int, default=4, help="batches to pack for the efficiency estimate")
    parser.add_argument("--seed", type=int, default=None, help="stream seed (default: the configuration's SEED, else 0)")
    parser.add_argument("--split", default="train")


def share_is_off(share: float, rate: float, n: int, carried: int = 0) -> bool:
    """Whether a packed share of `n` examples is off `rate` by more than 3 binomial sigma, beyond what the `carried`
    examples (drawn, waiting for the next step: they shift every task's share) can explain."""
    n = max(n, 1)
    return abs(share - rate) > 3 * (rate * (1 - rate) / n) ** 0.5 + carried / n


def run(args) -> int:
    from optiml_jax.data.stream import TrainStream
    from optiml_jax.cli.tasks import run_settings
    from optiml_jax.data.stream import sequence_length
    from optiml_jax.tasks import mixtures, registry

    run_settings.resolve(args, getattr(args, "gin_bindings", ()), ("length", "batch_size", "seed"))
    run_settings.require_registered(args.name)
    report = mixtures.recipe_rates(args.name)
    if report is not None:
        print("\n".join(report.report_lines()))
        if report.missing:
            print(f"missing collections (shares renormalized away): {', '.join(report.missing)}")
    stream = TrainStream(args.name, args.length, args.batch_size, args.seed, split=args.split)
    placed, placed_tokens = collections.Counter(), collections.Counter()
    tokens = nonpad = truncated = examples = 0
    for step in range(args.steps):
        batch, st = stream.get_batch_with_stats(step)
        placed.update(st.per_task)
        placed_tokens.update(st.placed_tokens)
        seg = batch["decoder_segment_ids"]
        tokens, nonpad = tokens + seg.size, nonpad + int((seg > 0).sum())
        truncated, examples = truncated + st.truncated, examples + st.examples
    carried = stream.carried_tasks(args.steps)
    all_tokens = max(sum(placed_tokens.values()), 1)
    by_coll = collections.defaultdict(float)
    print(f"\n{'task':<44} {'collection':<12} {'rate':>8} {'packed':>8} {'tokens':>8}")
    defaults, flagged = [], []
    for t, r in sorted(stream.rates.items(), key=lambda kv: -kv[1]):
        view = registry.get_task(t)
        c = view.info.collection
        by_coll[c] += r
        if not view.has_metadata:
            defaults.append(t)
        share = placed[t] / max(examples, 1)
        off = share_is_off(share, r, examples, sum(carried.values()))
        if off:
            flagged.append(t)
        print(f"{t:<44} {c:<12} {r:8.4f} {share:8.4f} {placed_tokens[t] / all_tokens:8.4f}"
              f"{'  !' if off else ''}{'' if view.has_metadata else '  *'}")
    if flagged:
        print(f"! {len(flagged)} task(s) whose packed share of examples is off its rate by more than 3 sigma: "
              f"{', '.join(flagged[:10])}{' ...' if len(flagged) > 10 else ''}")
    if defaults:
        print(f"* {len(defaults)} task(s) without instruction metadata, trained with the defaults (own category, "
              "instance-level layout, loss on 'targets' only); attach metadata with "
              "optiml_jax.tasks.registry.register_task_metadata")
    print("\neffective rate per collection: " + ", ".join(f"{c}={r:.4f}" for c, r in sorted(by_coll.items())))
    print(f"packing efficiency (non-pad / all) over {args.steps} x {stream.rows} x "
          f"{sequence_length(args.length)}: {nonpad / tokens:.4f}")
    print(f"examples packed: {examples}; truncated (left): {truncated}; drawn and carried into step {args.steps} "
          f"(none is dropped): {sum(carried.values())}")
    print("rates, packed: shares of examples (seqio's rates are examples); tokens: share of packed tokens")
    return 0
