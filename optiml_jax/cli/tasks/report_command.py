"""`report NAME`: a mixture's effective rates (per collection and task), packing efficiency, truncations."""

from __future__ import annotations

import collections

HELP = "mixture report: effective rates per collection/task, packing efficiency and truncation counts"


def add_arguments(parser) -> None:
    parser.add_argument("name", help="task or mixture name")
    parser.add_argument("--length", type=int, default=2048)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4, help="batches to pack for the efficiency estimate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", default="train")


def run(args) -> int:
    from optiml_jax.data.stream import TrainStream
    from optiml_jax.tasks import mixtures, registry

    report = mixtures.recipe_rates(args.name)
    if report is not None:
        print("\n".join(report.report_lines()))
        if report.missing:
            print(f"missing collections (shares renormalized away): {', '.join(report.missing)}")
    stream = TrainStream(args.name, args.length, args.batch_size, args.seed, split=args.split)
    placed = collections.Counter()
    tokens = nonpad = truncated = unplaced = examples = 0
    for step in range(args.steps):
        batch, st = stream.get_batch_with_stats(step)
        placed.update(st.per_task)
        seg = batch["decoder_segment_ids"]
        tokens, nonpad = tokens + seg.size, nonpad + int((seg > 0).sum())
        truncated, unplaced, examples = truncated + st.truncated, unplaced + st.unplaced, examples + st.examples
    by_coll = collections.defaultdict(float)
    print(f"\n{'task':<44} {'collection':<12} {'rate':>8} {'realized':>9}")
    defaults = []
    for t, r in sorted(stream.rates.items(), key=lambda kv: -kv[1]):
        view = registry.get_task(t)
        c = view.info.collection
        by_coll[c] += r
        if not view.has_metadata:
            defaults.append(t)
        print(f"{t:<44} {c:<12} {r:8.4f} {placed[t] / max(examples, 1):9.4f}{'' if view.has_metadata else '  *'}")
    if defaults:
        print(f"* {len(defaults)} task(s) without instruction metadata, trained with the defaults (own category, "
              "instance-level layout, loss on 'targets' only); attach metadata with "
              "optiml_jax.tasks.registry.register_task_metadata")
    print("\neffective rate per collection: " + ", ".join(f"{c}={r:.4f}" for c, r in sorted(by_coll.items())))
    print(f"packing efficiency (non-pad / all) over {args.steps} x {stream.rows} x {args.length}: {nonpad / tokens:.4f}")
    print(f"examples packed: {examples}; truncated (left): {truncated}; drawn but not placed: {unplaced}")
    return 0
