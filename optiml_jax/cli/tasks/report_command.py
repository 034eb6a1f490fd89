"""`report NAME`: a mixture's effective rates (per collection and task), packing efficiency, truncations; over the
row length, batch size and seed of the gin configuration when one is given (`run_settings`)."""

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
    print(f"packing efficiency (non-pad / all) over {args.steps} x {stream.rows} x {sequence_length(args.length)}: "
          f"{nonpad / tokens:.4f}")
    print(f"examples packed: {examples}; truncated (left): {truncated}; drawn but not placed: {unplaced}")
    return 0
