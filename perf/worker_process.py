"""One benchmark step per worker process, driven and interleaved from the parent, timed in the worker.

Why: a training step of one framework runs measurably slower when the other framework's model lives in the
same process (allocator and thread-pool state: our JAX step took 20-30% longer next to the torch model),
and nobody trains that way. Each framework gets its own process; the driver still alternates steps
(ours, theirs, ours, ...) so load from other processes on a shared machine hits both sides alike.
"""

from __future__ import annotations

import multiprocessing as mp
import time


def _serve(factory, args, conn) -> None:
    run, info = factory(*args)
    t0 = time.perf_counter()
    run()  # compile (JAX) + first step
    conn.send(("ready", time.perf_counter() - t0, info))
    while conn.recv() != "stop":
        t0 = time.perf_counter()
        run()
        conn.send(("time", time.perf_counter() - t0))
    conn.close()


class RemoteStep:
    """`factory(*args) -> (run, info)` is called in a fresh (spawned) process; `timed()` runs one step there."""

    def __init__(self, factory, *args):
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(factory, args, child), daemon=True)
        self.proc.start()
        _, self.first_s, self.info = self.conn.recv()

    def timed(self) -> float:
        self.conn.send("step")
        return self.conn.recv()[1]

    def close(self) -> None:
        self.conn.send("stop")
        self.proc.join(timeout=60)
