"""How the perf scripts time a compiled function and record their result, written once."""

from __future__ import annotations

import json
import statistics
import time


def median_time(fn, args, iters: int) -> float:
    """Median wall seconds of `fn(*args)` over `iters` calls, after one untimed call (compile + warm-up); each
    call is waited for (`jax.block_until_ready`)."""
    import jax

    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def write_json(path: str | None, result, indent: int = 2) -> None:
    """The result as JSON at `path` (the scripts' --json / --json_out); nothing when no path was given."""
    if path:
        with open(path, "w") as f:
            json.dump(result, f, indent=indent)
