"""What a command prints: our log lines and one progress display, without the start-up noise of the stack.

On a CPU-only machine TensorFlow (imported by SeqIO) prints absl/cudart lines about missing CUDA drivers, JAX logs
that it found no TPU, and Orbax warns about a type handler we override on purpose; none of it is actionable.
`setup_console()` (first thing in every command's main) silences exactly those, keeps warnings and errors, and
routes log records through `tqdm.write`, so a line logged during training is printed above the progress bar
instead of breaking it. `--verbose` (where a command has it) keeps everything at INFO.
"""

from __future__ import annotations

import logging
import os
import sys

# Loggers whose INFO lines are start-up probes, not information for the user (kept at WARNING).
_PROBE_LOGGERS = ("jax._src.xla_bridge", "absl", "orbax", "tensorflow")
_QUIET_MESSAGES = ('Type handler registry type "',)  # our deliberate ArrayHandler override (checkpoints)


class _TqdmHandler(logging.StreamHandler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 (logging must never raise)
            self.handleError(record)


class _DropKnownNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not any(m in record.getMessage() for m in _QUIET_MESSAGES)


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow with file descriptor 2 pointed at /dev/null: TensorFlow's import-time lines come from absl's
    C++ logger (the cudart probe, 'All log messages before absl::InitializeLog()'), which no Python setting and
    not TF_CPP_MIN_LOG_LEVEL reaches. An import error is still raised as usual."""
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow  # noqa: F401
    except ImportError:
        pass  # a command that needs it reports the import error itself, with the real message
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def setup_console(level: int = logging.INFO, verbose: bool = False, *, tensorflow: bool = True) -> None:
    """Call first in a command's main, before TensorFlow/JAX are imported."""
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
        if tensorflow:
            _import_tensorflow_quietly()
    handler = _TqdmHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    handler.addFilter(_DropKnownNoise())
    root = logging.getLogger()
    for h in list(root.handlers):  # a plain stream handler (basicConfig's) or ours again; never a test's capture
        if type(h) in (logging.StreamHandler, _TqdmHandler):
            root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
    for name in _PROBE_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)
    try:
        import absl.logging

        absl.logging.set_verbosity(absl.logging.INFO if verbose else absl.logging.WARNING)
        absl.logging.get_absl_handler().addFilter(_DropKnownNoise())
    except ImportError:
        pass
