"""`inspect NAME`: what training reads of a task (its seqio pipeline's inputs/targets, decoded), or the examples
of a packed batch of a mixture's stream."""

from __future__ import annotations

HELP = "show the formatted inputs/targets text of a task (first examples) or a mixture (examples of a packed batch)"


def add_arguments(parser) -> None:
    parser.add_argument("name", nargs="?", default=None,
                        help="task or mixture name (default: the gin configuration's MIXTURE_OR_TASK_NAME)")
    parser.add_argument("--split", default=None,
                        help="task split (default: train, or the task's only split for evaluation-only tasks)")
    parser.add_argument("--num_examples", type=int, default=3)
    parser.add_argument("--length", type=int, default=None,
                        help="packed row length (mixtures; default: the sum of the configuration's "
                             "TASK_FEATURE_LENGTHS, else 2048)")
    parser.add_argument("--seed", type=int, default=None, help="stream seed (default: the configuration's SEED, else 0)")


def _show(n: int, source: str, target: str, tag: str) -> None:
    print(f"===== example {n} [{tag}]")
    print(f"--- source:\n{source}\n--- target:\n{target}")


def run(args) -> int:
    import numpy as np

    from optiml_jax.data.stream import TrainStream
    from optiml_jax.data.task_cache import split_tokens
    from optiml_jax.cli.tasks import run_settings
    from optiml_jax.tasks import mixtures, registry

    run_settings.resolve(args, getattr(args, "gin_bindings", ()), ("length", "seed"))
    run_settings.require_registered(args.name)
    rates = mixtures.resolve_rates(args.name)
    if list(rates) == [args.name]:  # one task: its first examples as its seqio pipeline yields them
        view = registry.get_task(args.name)
        split = args.split or ("train" if "train" in view.splits else sorted(view.splits)[0])
        toks = split_tokens(args.name, split)
        vocab = view.vocabulary
        if not view.has_metadata:
            print(f"({args.name} has no instruction metadata: defaults {view.info})")
        for n in range(min(args.num_examples, len(toks))):
            inputs, targets = toks.inputs_and_targets(n)
            tag = toks.raw[n]["id"] if toks.raw is not None else f"{split}[{n}]"
            _show(n, vocab.decode(inputs.tolist()), vocab.decode([t for t in targets.tolist() if t != vocab.eos_id]),
                  tag)
        return 0
    # only the tasks step 0 draws are read: one packed row, not the whole mixture's cold start
    stream = TrainStream(args.name, args.length, 1, args.seed, split=args.split or "train",
                         read_all_tasks_first=False)
    batch, stats = stream.get_batch_with_stats(0)
    vocab = stream.vocabulary
    seg, tgt, w = batch["decoder_segment_ids"][0], batch["decoder_target_tokens"][0], batch["decoder_loss_weights"][0]
    for n, sid in enumerate(range(1, min(args.num_examples, int(seg.max())) + 1)):
        m = seg == sid
        src = vocab.decode(tgt[m & (w == 0)].tolist())
        lab = vocab.decode([t for t in tgt[m & (w > 0)].tolist() if t != vocab.eos_id])
        _show(n, src, lab, f"segment {sid}")
    print(f"row 0: {int(seg.max())} examples, efficiency {stats.efficiency:.4f}, "
          f"label tokens {int(np.sum(w))}")
    return 0
