"""The data path at OPT-IML Bench scale (issue 23): N NIv2-format tasks of 500 instances, from process start to
the first packed batch, peak RSS, and the stream's steady-state tokens/s.

One measurement per process (`measure`): process start (the OS's start time of this process, so interpreter and
imports count) -> registration of the N tasks through `register_opt_iml_bench` (the catalog path; the N tasks are
an extra catalog TSV, counts from `TASK_COUNTS_FILE`, so registration reads no task) -> `get_train_stream` over
`opt_iml_bench_train` -> `get_batch(0)` (the first training step's batch), with where the main thread's wall time
went up to then (on a CPU / waiting for one / blocked: `main_thread_times`); then `--steps` more batches (the first
pass: most steps draw tasks not read yet) and, with `--steady_from K`, steps K.. again (every task drawn by then has
been read), as packed (non-pad) tokens per second waited in `get_batch` and per CPU second of this process. With
`--trainer_tokens_per_s T` each batch is preceded by the trainer's step of batch x length / T seconds
(`trainer_step`: GIL-free matmuls on both cores), so the stream's read-ahead thread works while the trainer does, as
in training; without it batches are asked for back to back (then the wait is the stream's whole cost). RSS after the
imports (TensorFlow alone is ~1 GiB), at the first batch, after each pass, and the peak (ru_maxrss); the resident
task entries (`task_cache.RESIDENT`: now, peak, evictions) and how many tasks were read.
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


def main_thread_times() -> dict:
    """Where this process's main thread spent its wall time since it started: on a CPU, waiting for one (the run
    queue: other processes had both cores), or neither (blocked: disk, locks, sleeps). From /proc/self/schedstat
    (ns on CPU, ns runnable but waiting) and the voluntary context switches (each one a block)."""
    import psutil

    on_cpu, waiting, _ = (int(x) for x in pathlib.Path("/proc/self/schedstat").read_text().split())
    wall = time.time() - psutil.Process().create_time()
    lines = pathlib.Path("/proc/self/status").read_text().splitlines()
    status = dict(line.split(":", 1) for line in lines if ":" in line)
    return {"wall_s": round(wall, 1), "main_on_cpu_s": round(on_cpu / 1e9, 1),
            "main_run_queue_wait_s": round(waiting / 1e9, 1),
            "main_blocked_s": round(wall - (on_cpu + waiting) / 1e9, 1),
            "main_voluntary_switches": int(status["voluntary_ctxt_switches"]),
            "read_mib": round(psutil.Process().io_counters().read_chars / 2**20)}


def trainer_step(seconds: float) -> None:
    """The trainer's step as the data path sees it: `seconds` of matmuls that release the GIL (as XLA does) and
    keep both cores busy, so a read-ahead thread competes for them as it would with a real step."""
    import numpy as np

    a = np.ones((384, 384), np.float32)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        a = (a @ a) * np.float32(1e-3)


def timed_steps(stream, steps, step_s: float) -> dict:
    """Packed (non-pad) tokens of `steps`, per second the caller waited in `get_batch` (with `step_s` of
    `trainer_step` between calls: the time a trainer's data wait is) and per CPU second of the process."""
    import psutil

    def cpu_s() -> float:
        t = psutil.Process().cpu_times()
        return t.user + t.system

    nonpad, waited, c0, t0 = 0, 0.0, cpu_s(), time.perf_counter()
    for step in steps:
        if step_s:
            trainer_step(step_s)
        t1 = time.perf_counter()
        nonpad += int((stream.get_batch(step)["decoder_segment_ids"] > 0).sum())
        waited += time.perf_counter() - t1
    return {"tokens_per_wait_s": round(nonpad / waited), "tokens_per_cpu_s": round(nonpad / max(cpu_s() - c0, 1e-9)),
            "wait_s": round(waited, 2), "wall_s": round(time.perf_counter() - t0, 1)}


def measure(args) -> dict:
    import psutil

    started = psutil.Process().create_time()
    import gin

    import optiml_jax.tasks.opt_iml_bench as bench
    from optiml_jax.data import get_train_stream, task_cache
    from optiml_jax.testing.source_files import MINI_TOKENIZER

    def rss_mib() -> int:
        return round(psutil.Process().memory_info().rss / 2**20)

    def resident() -> dict:
        return {"resident": len(task_cache.RESIDENT), "resident_mib": round(task_cache.RESIDENT.nbytes / 2**20, 1)}

    if args.resident_mib:
        task_cache.RESIDENT.budget = args.resident_mib * 2**20
    work = pathlib.Path(args.work_dir)
    gin.parse_config(f"load_catalog.extra_files = ['{work / f'catalog_{args.tasks}.tsv'}']")
    res = {"tasks": args.tasks, "batch": args.batch, "length": args.length, "cache": "warm" if args.warm else
           ("cold" if args.cache_dir else "none"), "read_ahead_steps": args.read_ahead_steps,
           "resident_budget_mib": task_cache.RESIDENT.budget / 2**20, "import_s": round(time.time() - started, 1),
           "rss_after_import_mib": rss_mib()}
    names = bench.register_opt_iml_bench(niv2_data_dir=str(work / f"niv2_{args.tasks}"), tokenizer_dir=str(MINI_TOKENIZER),
                                         split_name="all_tasks", counts_file=str(work / f"counts_{args.tasks}.json"))
    res["registered_s"] = round(time.time() - started, 1)
    stream = get_train_stream("opt_iml_bench_train", args.length, args.batch, seed=0, cache_dir=args.cache_dir,
                              read_ahead_steps=args.read_ahead_steps)
    stream.get_batch(0)
    res.update(first_batch=main_thread_times(), tasks_read_for_first_batch=len(stream.tasks_read),
               rss_first_batch_mib=rss_mib())
    step_s = args.batch * args.length / args.trainer_tokens_per_s if args.trainer_tokens_per_s else 0.0
    res.update(trainer_step_s=round(step_s, 2), steps=args.steps)
    res["first_pass"] = dict(timed_steps(stream, range(1, args.steps + 1), step_s), tasks_read=len(stream.tasks_read),
                             rss_mib=rss_mib(), **resident())
    if args.steady_from:  # after the first pass over the catalog: every task drawn by then has been read
        for step in range(args.steps + 1, args.steady_from):
            stream.get_batch(step)
        res["steady"] = dict(timed_steps(stream, range(args.steady_from, args.steady_from + args.steps), step_s),
                             from_step=args.steady_from, tasks_read=len(stream.tasks_read), rss_mib=rss_mib(),
                             **resident())
    res.update(num_tasks=len(names), resident_peak=task_cache.RESIDENT.peak, evictions=task_cache.RESIDENT.evictions,
               resident_peak_mib=round(task_cache.RESIDENT.peak_nbytes / 2**20, 1),
               peak_rss_mib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
               load_avg_1min=round(os.getloadavg()[0], 1))
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
    p.add_argument("--read_ahead_steps", type=int, default=2, help="the stream's read-ahead (0: off)")
    p.add_argument("--resident_mib", type=float, default=0, help="the resident shards' budget (0: the default)")
    p.add_argument("--trainer_tokens_per_s", type=float, default=0.0,
                   help="simulate a trainer consuming this many tokens/s between batches (0: batches back to back)")
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
              "--steps", str(args.steps), "--steady_from", str(args.steady_from), "--read_ahead_steps",
              str(args.read_ahead_steps), "--resident_mib", str(args.resident_mib), "--trainer_tokens_per_s",
              str(args.trainer_tokens_per_s)] + (["--json_out", args.json_out] if args.json_out else [])
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
