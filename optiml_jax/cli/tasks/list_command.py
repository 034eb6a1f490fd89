"""`list`: every registered instruction task with collection, category, level and example counts, then the
OPT-IML Bench catalog's counts per collection and split next to the paper's Table 1 (`optiml_jax.tasks.catalog.report`)."""

from __future__ import annotations

HELP = ("list the registered tasks: collection, category, instruction type, generalization level, example counts; "
        "OPT-IML Bench catalog counts vs the paper's Table 1")


def add_arguments(parser) -> None:
    parser.add_argument("--generalization_split", default=None, help="split whose levels to show (default: first)")
    parser.add_argument("--prefix", default="", help="only tasks whose name starts with this")
    parser.add_argument("--catalog_split", default=None,
                        help="catalog split for the Table 1 comparison (default: --generalization_split when it is "
                             "a catalog split, else opt_iml_paper)")
    parser.add_argument("--no_catalog", action="store_true", help="skip the catalog vs Table 1 comparison")


def run(args) -> int:
    from optiml_jax.tasks import registry

    splits = registry.generalization_splits()
    gsplit = splits.get(args.generalization_split) if args.generalization_split else next(iter(splits.values()), None)
    if args.generalization_split and gsplit is None:
        raise SystemExit(f"unknown generalization split {args.generalization_split!r}; known: {sorted(splits)}")
    rows = [t for t in registry.registered_tasks() if t.info.name.startswith(args.prefix)]
    broken: list[str] = []  # "task (split): error" of every split that could not be counted
    print(f"{'task':<44} {'collection':<12} {'category':<28} {'type':<8} {'level':<21} counts")
    for t in sorted(rows, key=lambda t: t.info.name):
        i = t.info
        level = "-"
        if gsplit is not None:
            level = gsplit.level(i) or ("train" if gsplit.is_trainable(i) else "-")
        counts = " ".join(f"{s}={_count(t, s, broken)}" for s in t.splits)
        mark = "" if t.has_metadata else "  (no metadata: defaults)"
        print(f"{i.name:<44} {i.collection:<12} {i.category:<28} {i.instruction_type:<8} {level:<21} {counts}{mark}")
    _print_mixtures(args.prefix)
    cats = {t.info.category for t in rows}
    colls = {t.info.collection for t in rows}
    print(f"{len(rows)} tasks, {len(colls)} collections, {len(cats)} categories"
          + (f" (levels from split {gsplit.name!r})" if gsplit else ""))
    if broken:
        print(f"\n{len(broken)} split(s) could not be counted (shown as '!'):")
        for line in broken:
            print(f"  {line}")
        return 1
    if not args.no_catalog:
        _print_catalog_table(args.catalog_split or args.generalization_split)
    return 0


def _count(view, split: str, broken: list[str]) -> str:
    """A split's size without reading data: our counts files, else what the seqio source knows, else '?'."""
    from optiml_jax.tasks import registry

    if view.raw is not None:
        try:
            return str(registry.num_examples(view.name, split))
        except Exception as e:  # noqa: BLE001 (one broken task must not stop the listing of every other task)
            broken.append(f"{view.name} ({split}): {e}")
            return "!"
    try:
        n = view.seqio_task.num_input_examples(split)
    except Exception:  # noqa: BLE001 (a user's broken source must not stop the listing of every other task)
        n = None
    return "?" if n is None else str(n)


def _print_mixtures(prefix: str) -> None:
    import seqio

    from optiml_jax.tasks import mixtures

    names = [n for n in sorted(seqio.MixtureRegistry.names()) if n.startswith(prefix)]
    if not names:
        return
    print(f"\n{'mixture':<44} {'tasks':>5}  rates")
    for n in names:
        mix = seqio.MixtureRegistry.get(n)
        kind = "paper recipe (gin: MixtureRecipe)" if mixtures.is_recipe_mixture(n) else "as registered"
        print(f"{n:<44} {len(mix.tasks):>5}  {kind}")
    print()


def _print_catalog_table(split_name: str | None) -> None:
    from optiml_jax.tasks.catalog import report as catalog_report
    from optiml_jax.tasks.catalog.splits import SPLITS

    name = split_name if split_name in SPLITS else "opt_iml_paper"
    print(f"\nOPT-IML Bench catalog (optiml_jax/tasks/catalog) vs the paper's Table 1, split {name!r}:\n")
    print(catalog_report.format_markdown(catalog_report.report(name)))
