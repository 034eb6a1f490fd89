"""The data path at OPT-IML Bench scale (issue 23): N NIv2-format tasks of 500 instances, from process start to
the first packed batch, peak RSS, and the stream's steady-state tokens/s.

One measurement per process (`measure`): process start (the OS's start time of this process, so interpreter and
imports count) -> registration of the N tasks through `register_opt_iml_bench` (the catalog path; the N tasks are
an extra catalog TSV, counts from `TASK_COUNTS_FILE`, so registration reads no task) -> `get_train_stream` over
`opt_iml_bench_train` -> `get_batch(0)` (the first training step's batch); then `--steps` more batches timed as
packed (non-pad) tokens/s (the first pass: most steps draw tasks not read yet) and, with `--steady_from K`, steps
K.. again (every task drawn by then is in memory); per wall second and per CPU second of this process (on a
shared machine the second is closer to what a quiet one gives); peak RSS (ru_maxrss) of the whole process and
its RSS after the imports (TensorFlow alone is ~1 GiB); how many tasks were read.
`--cache_dir` names the shared token cache (`python -m optiml_jax.tasks cache`): cold = empty, warm = filled.

    python perf/bench_scale.py write --tasks 100 --work_dir /tmp/bench_scale     # the NIv2 files (not timed)
    python perf/bench_scale.py measure --tasks 100 --work_dir /tmp/bench_scale --cache_dir /tmp/bench_scale/cache
    python perf/bench_scale.py all --sizes 10 100 --work_dir /tmp/bench_scale   # write, cold, build cache, warm
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import subprocess
import sys
import time

INSTANCES = 500
REPO = pathlib.Path(__file__).resolve().parents[1]


def task_stems(n: int) -> list[str]:
    return [f"task{9000 + i}_bench_scale_{i}" for i in range(n)]


def write(work_dir: pathlib.Path, n: int) -> None:
    """N NIv2 task files (the project's test writer), an extra catalog TSV naming them, and their counts file."""
    from optiml_jax.tasks.catalog.entries import CATALOG_COLUMNS
    from optiml_jax.testing.source_files import write_niv2_task

    data = work_dir / f"niv2_{n}"
    data.mkdir(parents=True, exist_ok=True)
    rows, counts = ["\t".join(CATALOG_COLUMNS)], {}
    for i, stem in enumerate(task_stems(n)):
        if not (data / f"{stem}.json").exists():
            write_niv2_task(data, stem, n=INSTANCES, tag=f"s{i}")
        rows.append("\t".join([f"niv2_{stem}", "niv2", "Question Answering", "Question Answering", f"scale{i}", "task",
                               "rouge_l", "false", stem]))
        counts[f"niv2_{stem}"] = {"train": INSTANCES}
    (work_dir / f"catalog_{n}.tsv").write_text("\n".join(rows) + "\n")
    (work_dir / f"counts_{n}.json").write_text(json.dumps(counts))


def measure(args) -> dict:
    import psutil

    started = psutil.Process().create_time()
    import gin

    import optiml_jax.tasks.opt_iml_bench as bench
    from optiml_jax.data import get_train_stream
    from optiml_jax.testing.source_files import MINI_TOKENIZER

    def cpu_s() -> float:  # this process's CPU time: on a shared machine, closer to a quiet machine's wall time
        t = psutil.Process().cpu_times()
        return t.user + t.system

    work = pathlib.Path(args.work_dir)
    gin.parse_config(f"load_catalog.extra_files = ['{work / f'catalog_{args.tasks}.tsv'}']")
    t_import = time.time() - started
    rss_imported = psutil.Process().memory_info().rss
    names = bench.register_opt_iml_bench(niv2_data_dir=str(work / f"niv2_{args.tasks}"), tokenizer_dir=str(MINI_TOKENIZER),
                                         split_name="all_tasks", counts_file=str(work / f"counts_{args.tasks}.json"))
    t_register = time.time() - started
    cpu_register = cpu_s()
    stream = get_train_stream("opt_iml_bench_train", args.length, args.batch, seed=0, cache_dir=args.cache_dir)
    stream.get_batch(0)
    t_first = time.time() - started
    cpu_first = cpu_s()
    read_first = len(stream.tasks_read)
    nonpad, t1, c1 = 0, time.perf_counter(), cpu_s()
    for step in range(1, args.steps + 1):
        nonpad += int((stream.get_batch(step)["decoder_segment_ids"] > 0).sum())
    dt, dc = time.perf_counter() - t1, cpu_s() - c1
    steady = {}
    if args.steady_from:  # after the first pass over the catalog: every task drawn is in memory
        for step in range(args.steps + 1, args.steady_from):
            stream.get_batch(step)
        n2, t2, c2 = 0, time.perf_counter(), cpu_s()
        for step in range(args.steady_from, args.steady_from + args.steps):
            n2 += int((stream.get_batch(step)["decoder_segment_ids"] > 0).sum())
        steady = {"steady_from_step": args.steady_from, "tasks_read_by_then": len(stream.tasks_read),
                  "steady_tokens_per_s": round(n2 / (time.perf_counter() - t2)),
                  "steady_tokens_per_cpu_s": round(n2 / max(cpu_s() - c2, 1e-9))}
    res = {"tasks": len(names), "batch": args.batch, "length": args.length, "cache": "warm" if args.warm else
           ("cold" if args.cache_dir else "none"), "import_s": round(t_import, 1), "registered_s": round(t_register, 1),
           "first_batch_s": round(t_first, 1), "tasks_read_for_first_batch": read_first,
           "steps": args.steps, "tasks_read_after": len(stream.tasks_read),
           "stream_tokens_per_s": round(nonpad / dt), "stream_tokens_per_cpu_s": round(nonpad / max(dc, 1e-9)),
           "registered_cpu_s": round(cpu_register, 1), "first_batch_cpu_s": round(cpu_first, 1), "rss_after_import_mib": round(rss_imported / 2**20),
           "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
           **steady, "load_avg_1min": os.getloadavg()[0]}
    print(json.dumps(res))
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["write", "measure", "all"])
    p.add_argument("--tasks", type=int, default=10)
    p.add_argument("--sizes", type=int, nargs="*", default=[10, 100, 1000, 2000])
    p.add_argument("--work_dir", default="/tmp/bench_scale")
    p.add_argument("--cache_dir", default=None)
    p.add_argument("--warm", action="store_true", help="label only: the cache is expected to be filled")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--length", type=int, default=2048)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--steady_from", type=int, default=0,
                   help="also time --steps steps from this step on (after the first pass over the tasks)")
    p.add_argument("--json_out", default=None)
    args = p.parse_args(argv)
    work = pathlib.Path(args.work_dir)
    if args.mode == "write":
        write(work, args.tasks)
        return
    if args.mode == "measure":
        res = measure(args)
        if args.json_out:
            with open(args.json_out, "a") as f:
                f.write(json.dumps(res) + "\n")
        return
    env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu")
    common = ["--work_dir", str(work), "--batch", str(args.batch), "--length", str(args.length),
              "--steps", str(args.steps), "--steady_from", str(args.steady_from)] + (["--json_out", args.json_out] if args.json_out else [])
    for n in args.sizes:
        write(work, n)
        cache = work / f"cache_{n}"
        subprocess.run(["rm", "-rf", str(cache)], check=True)
        me = [sys.executable, __file__, "measure", "--tasks", str(n), "--cache_dir", str(cache)] + common
        subprocess.run(me, env=env, check=True)  # cold: the cache is empty, and filled for what was read
        t0 = time.time()
        subprocess.run([sys.executable, "-m", "optiml_jax.tasks", "cache", "opt_iml_bench_train", "--cache_dir",
                        str(cache), "--workers", str(args.workers), "--gin_file=gin/bench/opt_iml_bench.gin",
                        f"--gin.NIV2_DATA_DIR='{work / f'niv2_{n}'}'", f"--gin.OPT_TOKENIZER_DIR='{_mini()}'",
                        "--gin.SPLIT_NAME='all_tasks'", f"--gin.TASK_COUNTS_FILE='{work / f'counts_{n}.json'}'",
                        f"--gin.load_catalog.extra_files=['{work / f'catalog_{n}.tsv'}']"],
                       env=env, check=True, cwd=REPO)
        print(json.dumps({"tasks": n, "cache_build_s": round(time.time() - t0, 1), "workers": args.workers}))
        subprocess.run(me + ["--warm"], env=env, check=True)


def _mini() -> str:
    from optiml_jax.testing.source_files import MINI_TOKENIZER

    return str(MINI_TOKENIZER)


if __name__ == "__main__":
    main()
