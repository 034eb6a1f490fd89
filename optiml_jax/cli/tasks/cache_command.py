"""`cache NAME --cache_dir DIR [--workers N]`: the tokenized train split of every task of a mixture, written once
into a token cache that the training stream (`get_train_stream.cache_dir`) and other hosts then read.

The cache is one `.npz` file per (task, split, registration) (`optiml_jax.data.tokenization.cache_path`: the
name holds a digest of the task's vocabulary, metadata, format seed and preprocessors, so a changed registration
never reads a stale file), written under a unique temporary name and renamed into place: several processes or
hosts can build and read one shared directory at once. `--workers N` runs N processes of this command, worker i
caching tasks i, i + N, ... (each registers the tasks itself, so TensorFlow's per-task pipeline tracing runs in
parallel); `--worker i/N` is one of them (e.g. one per host). A task already cached is skipped.
"""

from __future__ import annotations

import subprocess
import sys
import time

HELP = "write the token cache of every task of a mixture (in parallel), for get_train_stream.cache_dir"


def add_arguments(parser) -> None:
    parser.add_argument("name", help="task or mixture name")
    parser.add_argument("--cache_dir", required=True, help="directory of the token cache (shared by hosts)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--workers", type=int, default=1, help="processes to run (each caches every N-th task)")
    parser.add_argument("--worker", default=None, help="i/N: cache only tasks i, i + N, ... (set by --workers)")


def run(args) -> int:
    from optiml_jax.cli import errors
    from optiml_jax.data import task_cache
    from optiml_jax.data.tokenization import save_tokens
    from optiml_jax.tasks import mixtures

    try:
        names = sorted(t for t, r in mixtures.resolve_rates(args.name).items() if r > 0)
    except KeyError as e:
        raise errors.fail(str(e.args[0])) from e
    if args.workers < 1:
        raise errors.fail(f"--workers must be >= 1, got {args.workers}")
    t0 = time.time()
    if args.worker is None and args.workers > 1:
        if "--workers" in args.argv:  # "--workers N" as two words
            i = args.argv.index("--workers")
            args.argv = args.argv[:i] + args.argv[i + 2:]
        argv = [a for a in args.argv if not a.startswith("--workers")]
        procs = [subprocess.Popen([sys.executable, "-m", "optiml_jax.tasks", *argv, f"--worker={i}/{args.workers}"])
                 for i in range(args.workers)]
        codes = [p.wait() for p in procs]
        if any(codes):
            raise errors.fail(f"cache: worker exit codes {codes}")
        print(f"cached {len(names)} task(s) of {args.name} into {args.cache_dir} with {args.workers} workers in "
              f"{time.time() - t0:.1f} s")
        return 0
    index, count = 0, 1
    if args.worker is not None:
        try:
            index, count = (int(x) for x in args.worker.split("/"))
            assert 0 <= index < count
        except (ValueError, AssertionError):
            raise errors.fail(f"--worker must be i/N with 0 <= i < N, got {args.worker!r}") from None
    mine = names[index::count]
    written = 0
    for name in mine:
        path = task_cache.cache_file(name, args.split, cache_dir=args.cache_dir)
        if path.is_file():
            continue
        # not kept in memory: a worker's memory is one task's, not its share of the catalog
        tokens = task_cache.split_tokens(name, args.split, cache_dir=args.cache_dir, memoize=False)
        if not path.is_file():  # read earlier in this process (from memory): write it now
            save_tokens(path, tokens)
        written += 1
    print(f"worker {index}/{count}: {len(mine)} task(s), {written} written, {len(mine) - written} already cached "
          f"({time.time() - t0:.1f} s)")
    return 0
