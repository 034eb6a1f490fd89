"""`leakage --train MIXTURE --eval SPLIT`: 13-gram overlap between a mixture's training data and a split's
evaluation data (paper section 2.3), over registered tasks; writes PREFIX.json and PREFIX.md.

Train side: the raw `train` examples of every task the mixture samples (rate > 0). Eval side: the raw
`--eval_splits` examples of every registered task the generalization split evaluates (any level). The checker is
`optiml_jax.tasks.leakage` (hashed n-grams, vectorized look-ups); each flagged pair lists its evidence (eval example,
closest train example, shared n-grams) in both files and its first example on the console."""

from __future__ import annotations

HELP = "13-gram leakage between a training mixture and a generalization split's evaluation tasks (JSON + markdown)"


def add_arguments(parser) -> None:
    from optiml_jax.tasks.leakage import EVIDENCE_PER_PAIR, NGRAM, TEMPLATE_SHARE, THRESHOLD

    parser.add_argument("--train", required=True, help="registered mixture (or task) whose train splits are checked")
    parser.add_argument("--eval", required=True,
                        help="generalization split name (registered, e.g. mini_bench_default, opt_iml_paper)")
    parser.add_argument("--eval_splits", default="validation,test",
                        help="comma-separated task splits read for each evaluation task (those it has)")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--out_dir", default=None,
                     help="directory for leakage_report.json and leakage_report.md "
                          "(default: leakage_reports/<train>_vs_<eval> under the working directory)")
    out.add_argument("--out", default=None, help="output prefix instead: writes PREFIX.json and PREFIX.md")
    parser.add_argument("--ngram", type=int, default=NGRAM)
    parser.add_argument("--threshold", type=float, default=THRESHOLD, help="flag pairs above this eval fraction")
    parser.add_argument("--max_examples", type=int, default=None, help="per task and split (default: all)")
    parser.add_argument("--evidence_per_pair", type=int, default=EVIDENCE_PER_PAIR,
                        help="flagged eval examples named per pair, each with its closest train example and the "
                             "first shared n-grams (<= 0: all)")
    parser.add_argument("--template_share", type=float, default=TEMPLATE_SHARE,
                        help="n-grams in more than this share of one task's examples are its template, not overlap "
                             "(<= 0: count them)")


def _split(name: str):
    from optiml_jax.tasks import registry

    splits = registry.generalization_splits()
    if name in splits:
        return splits[name]
    from optiml_jax.tasks.catalog.splits import SPLITS, get_split
    if name in SPLITS:
        return get_split(name)
    raise SystemExit(f"error: unknown generalization split {name!r}; registered: {sorted(splits)}, "
                     f"catalog: {sorted(SPLITS)}")


def _examples(name: str, split: str, cap: int | None) -> list[dict]:
    """Raw examples of our tasks; for any other seqio task, its pipeline's inputs/targets decoded to text."""
    from optiml_jax.data.task_cache import split_tokens
    from optiml_jax.tasks import registry

    view = registry.get_task(name)
    if view.raw is not None:
        return list(registry.load_raw_examples(name, split))[:cap]
    toks, vocab = split_tokens(name, split), view.vocabulary
    out = []
    for j in range(len(toks) if cap is None else min(cap, len(toks))):
        inputs, targets = toks.inputs_and_targets(j)
        out.append({"instruction": "", "input": vocab.decode(inputs.tolist()), "id": f"{name}-{split}-{j}",
                    "target": vocab.decode([t for t in targets.tolist() if t != vocab.eos_id])})
    return out


def run(args) -> int:
    from optiml_jax.tasks import leakage
    from optiml_jax.tasks import mixtures, registry

    from optiml_jax.cli.tasks.run_settings import require_registered

    cap = args.max_examples
    require_registered(args.train)
    rates = mixtures.resolve_rates(args.train)
    train = {}
    for name, rate in sorted(rates.items()):
        if rate > 0:
            if "train" not in registry.get_task(name).splits:
                raise SystemExit(f"error: mixture {args.train!r} samples task {name!r}, which has no train split")
            train[name] = _examples(name, "train", cap)
    split = _split(args.eval)
    wanted = [s.strip() for s in args.eval_splits.split(",") if s.strip()]
    evals, levels, no_data = {}, {}, []
    for task in sorted(registry.registered_tasks(), key=lambda t: t.info.name):
        level = split.level(task.info)
        if level is None:
            continue
        have = [s for s in wanted if s in task.splits]
        if not have:
            no_data.append(task.info.name)
            continue
        evals[task.info.name] = [ex for s in have for ex in _examples(task.info.name, s, cap)]
        levels[task.info.name] = level
    if not evals:
        raise SystemExit(f"error: split {split.name!r} has no registered evaluation task with a "
                         f"{'/'.join(wanted)} split")
    report = leakage.find_leaks(train, evals, n=args.ngram, threshold=args.threshold,
                                template_share=args.template_share if args.template_share > 0 else None,
                                evidence_per_pair=args.evidence_per_pair if args.evidence_per_pair > 0 else None)
    report.update(train_mixture=args.train, eval_split=split.name, eval_splits=wanted, eval_levels=levels,
                  eval_tasks_without_eval_split=no_data)
    import pathlib

    from optiml_jax.paths import local_only

    if args.out:
        prefix = pathlib.Path(local_only(args.out, "--out", "the leakage report"))
    else:
        out_dir = pathlib.Path(local_only(args.out_dir or pathlib.Path("leakage_reports") / f"{args.train}_vs_{split.name}",
                                          "--out_dir", "the leakage report"))
        prefix = out_dir / "leakage_report"
    jp, mp = leakage.write_report(report, prefix)
    for p in report["pairs"]:
        print(f"LEAK {p['train']} -> {p['eval']} ({levels[p['eval']]}): {p['overlap_fraction']:.1%} "
              f"({p['overlapping_examples']}/{p['eval_examples']})")
        for e in p["evidence"][:1]:
            print(f"  e.g. eval {e['eval_id']} ~ train {e['train_id']}: {e['shared_ngrams'][0]!r}")
    print(f"{len(report['pairs'])} flagged pairs: {len(train)} train tasks of {args.train!r} x {len(evals)} "
          f"evaluation tasks of split {split.name!r}; wrote {jp} and {mp}")
    if no_data:
        print(f"evaluation tasks without a {'/'.join(wanted)} split (not checked): {', '.join(no_data)}")
    return 0
