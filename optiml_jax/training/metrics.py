"""Training metrics: TensorBoard events, `MODEL_DIR/metrics/train.jsonl`, a tqdm bar, and MFU.

MFU convention (PaLM appendix B; same as perf/train_step_cpu.py): model FLOPs per token
    6 * N + 12 * L * H * Q * T
with N = `config.num_params()` (all parameters, tied embedding counted once), L layers, H heads,
Q head dim, T the sequence length (full causal attention, no halving for the mask, no remat
recompute counted). Tokens are all `batch * length` positions the step computes (padding included,
since the hardware does that work); `target_tokens_per_second` counts label tokens only.
MFU = achieved model FLOP/s / peak FLOP/s, where the peak is `peak_flops` if given (for the whole
job), else the device kind's dense bf16 peak times the device count (H100/H200 989e12, A100 312e12,
TPU v4 275e12, v5e 197e12, v5p 459e12, v6e 918e12), else on CPU a float32 2048^3 matmul measured at
start-up (all fake CPU devices share the same cores, so it is a per-host peak times process count).

Resume: a run restored at step S keeps exactly one record per step. Before logging, `MetricsLogger` cuts
`train.jsonl` back to the records of steps < S (the restored run logs S, S+1, ... again), `eval_<split>.jsonl`
back to steps <= S (evals run after the save of their step), drops a torn last line, and rewrites every
TensorBoard events file under `metrics/tensorboard/<split>/` the same way; a record for a (split, step) that is
already on file is not written twice. The events files then agree with the JSONL files step for step.
"""

from __future__ import annotations

import json
import logging
import pathlib
import struct
import time
from typing import Any

import jax
import jax.numpy as jnp

from optiml_jax.paths import open_file, user_path

log = logging.getLogger(__name__)

_DEVICE_PEAKS = {  # dense bf16 FLOP/s per device, by substring of `device_kind` (lower case)
    "h100": 989e12, "h200": 989e12, "a100": 312e12,
    "tpu v4": 275e12, "tpu v5 lite": 197e12, "tpu v5e": 197e12, "tpu v5p": 459e12, "tpu v5": 459e12,
    "tpu v6": 918e12,
}


def flops_per_token(config, length: int) -> float:
    return 6 * config.num_params() + 12 * config.num_layers * config.num_heads * config.head_dim * length


def measure_matmul_peak(n: int = 2048, repeats: int = 3) -> float:
    """FLOP/s of a float32 n^3 jnp.dot on one device (best of `repeats`)."""
    dev = jax.local_devices()[0]
    a = jax.device_put(jnp.ones((n, n), jnp.float32), dev)
    dot = jax.jit(jnp.dot)
    dot(a, a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        dot(a, a).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def job_peak_flops(peak_flops: float | None = None) -> tuple[float | None, str]:
    """(peak FLOP/s for the whole job, how it was obtained)."""
    if peak_flops:
        return float(peak_flops), "configured"
    kind = jax.devices()[0].device_kind.lower()
    for key, peak in _DEVICE_PEAKS.items():
        if key in kind:
            return peak * jax.device_count(), f"{kind} bf16 peak x {jax.device_count()} devices"
    if jax.devices()[0].platform == "cpu":
        return measure_matmul_peak() * jax.process_count(), "measured f32 2048^3 matmul (per host) x processes"
    return None, f"unknown device kind {kind!r}: set peak_flops"


def read_event_records(path: pathlib.Path) -> list[bytes]:
    """The serialized records of a TFRecord-framed events file (a torn record at the end is left out)."""
    data = user_path(path, "MODEL_DIR").read_bytes()
    out, pos = [], 0
    while pos + 12 <= len(data):
        (n,) = struct.unpack("<Q", data[pos:pos + 8])
        end = pos + 12 + n + 4
        if end > len(data):
            break
        out.append(data[pos + 12:pos + 12 + n])
        pos = end
    return out


def read_scalar_events(logdir: pathlib.Path) -> list[tuple[int, str, float]]:
    """(step, tag, value) of every scalar in every events file of `logdir` (oldest file first)."""
    from tensorboard.compat.proto import event_pb2

    out = []
    for f in sorted(user_path(logdir, "MODEL_DIR").glob("events.out.tfevents.*")):
        for rec in read_event_records(f):
            ev = event_pb2.Event.FromString(rec)
            for v in ev.summary.value:
                out.append((int(ev.step), v.tag, float(v.simple_value)))
    return out


def _cut_events_file(path: pathlib.Path, keep_step) -> int:
    """Rewrite an events file without the summaries whose step fails `keep_step`; returns how many went."""
    from tensorboard.compat.proto import event_pb2
    from tensorboard.summary.writer.record_writer import RecordWriter

    records = read_event_records(path)
    kept, dropped = [], 0
    for rec in records:
        ev = event_pb2.Event.FromString(rec)
        if ev.HasField("summary") and not keep_step(int(ev.step)):
            dropped += 1
        else:
            kept.append(rec)
    torn = len(path.read_bytes()) != sum(len(r) + 16 for r in records)
    if dropped or torn:
        tmp = path.with_name(path.name + ".rewrite")
        with tmp.open("wb") as f:
            writer = RecordWriter(f)
            for rec in kept:
                writer.write(rec)
            writer.flush()
        tmp.replace(path)
    return dropped


def _cut_jsonl(path: pathlib.Path, keep_step) -> tuple[list[dict], int]:
    """Keep the records whose step passes `keep_step` (first one per step); rewrite the file if anything went."""
    kept, seen, dropped = [], set(), 0
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            step = int(rec["step"])
        except (ValueError, KeyError, TypeError):
            dropped += 1  # a torn line (the process died while writing it) or garbage
            continue
        if keep_step(step) and step not in seen:
            kept.append(rec)
            seen.add(step)
        else:
            dropped += 1
    if dropped:
        tmp = path.with_name(path.name + ".rewrite")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
        tmp.replace(path)
    return kept, dropped


class _TensorBoardWriter:
    """Scalar event files written with tensorboard's record framing and protos.

    tensorboard's own EventFileWriter goes through `tensorboard.compat.tf`, which imports the real
    TensorFlow when it is installed (~15 s here); the file format is just TFRecord-framed `Event` protos.
    """

    def __init__(self, logdir: pathlib.Path):
        import socket

        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.summary.writer.record_writer import RecordWriter

        self._event_pb2, self._summary_pb2 = event_pb2, summary_pb2
        logdir.mkdir(parents=True, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{jax.process_index()}"
        self._writer = RecordWriter(open_file(logdir / name, "ab"))
        self._writer.write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2").SerializeToString())

    def scalars(self, step: int, values: dict[str, float]) -> None:
        summary = self._summary_pb2.Summary(value=[
            self._summary_pb2.Summary.Value(tag=k, simple_value=float(v)) for k, v in values.items()])
        event = self._event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary)
        self._writer.write(event.SerializeToString())

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class MetricsLogger:
    """Writes per-step scalars (process 0 only) to JSONL and TensorBoard, and drives the progress bar."""

    def __init__(self, model_dir: str | pathlib.Path, *, start_step: int, total_steps: int,
                 progress: bool = True, tensorboard: bool = True):
        self.enabled = jax.process_index() == 0
        self.dir = user_path(model_dir, "MODEL_DIR") / "metrics"
        self._jsonl = None
        self._tb = {}
        self._tensorboard = tensorboard
        self._bar = None
        self._seen: dict[str, set[int]] = {}
        self.prior_nonfinite = 0  # non-finite (skipped) steps train.jsonl records from before the restored step
        if not self.enabled:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        self._resume(int(start_step))
        self._jsonl = open_file(self.dir / "train.jsonl", "a")
        if progress:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total_steps, initial=start_step, desc="train", unit="step", dynamic_ncols=True)

    def _resume(self, start_step: int) -> None:
        """Cut every metrics file back to what the restored step had logged (module docstring)."""
        def keep_for(split: str):
            return (lambda s: s < start_step) if split == "train" else (lambda s: s <= start_step)

        for path in sorted(self.dir.glob("*.jsonl")):
            split = path.stem
            kept, dropped = _cut_jsonl(path, keep_for(split))
            self._seen[split] = {int(r["step"]) for r in kept}
            if split == "train":
                self.prior_nonfinite = sum(int(r.get("nonfinite", 0)) for r in kept)
            if dropped:
                log.info("%s: dropped %d record(s) past step %d logged before the restart", path, dropped, start_step)
        tb = self.dir / "tensorboard"
        if tb.is_dir():
            for split_dir in sorted(p for p in tb.iterdir() if p.is_dir()):
                for f in sorted(split_dir.glob("events.out.tfevents.*")):
                    _cut_events_file(f, keep_for(split_dir.name))

    def _writer(self, split: str):
        if split not in self._tb and self._tensorboard:
            self._tb[split] = _TensorBoardWriter(self.dir / "tensorboard" / split)
        return self._tb.get(split)

    def log(self, step: int, values: dict[str, Any], split: str = "train") -> None:
        if not self.enabled:
            return
        seen = self._seen.setdefault(split, set())
        if int(step) in seen:  # already on file (a rerun of a finished run re-evaluates its last step)
            return
        seen.add(int(step))
        clean = {k: (float(v) if not isinstance(v, (int, str)) else v) for k, v in values.items()}
        record = {"step": int(step), **clean}
        if split == "train":
            self._jsonl.write(json.dumps(record) + "\n")
        else:
            with (self.dir / f"{split}.jsonl").open("a") as f:
                f.write(json.dumps(record) + "\n")
        writer = self._writer(split)
        if writer is not None:
            writer.scalars(step, {k: v for k, v in clean.items() if isinstance(v, float)})

    def progress(self, step: int, loss: float | None = None) -> None:
        if self._bar is not None:
            self._bar.n = step
            if loss is not None:
                self._bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            self._bar.refresh()

    def flush(self) -> None:
        if not self.enabled:
            return
        self._jsonl.flush()
        for w in self._tb.values():
            w.flush()

    def close(self) -> None:
        if not self.enabled:
            return
        self.flush()
        self._jsonl.close()
        for w in self._tb.values():
            w.close()
        if self._bar is not None:
            self._bar.close()
