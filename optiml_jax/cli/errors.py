"""How every command ends: one clear line for an error the user caused, a documented exit code, and the full
traceback only with --verbose (or for an internal error, which is a bug to report).

Exit codes (the README's "Exit codes" section and every command's --help list the same table):
  0    success
  1    internal error: a bug; the traceback is printed
  2    usage or configuration error: bad flag, gin file or binding, a macro no binding reads, a bad value
       (BATCH_SIZE, MESH_SHAPE, TASK_FEATURE_LENGTHS, ...), an unknown task or mixture, a missing or wrong path
  3    training stopped on non-finite losses (ON_NONFINITE = 'stop', or 'skip' past its cap)
  4    MODEL_DIR is in use by another training run (its lock file names it)
  5    storage: MODEL_DIR or checkpoints/ not writable, too little free space, a checkpoint save failed, a damaged
       checkpoint asked for by eval/infer/convert, or no intact checkpoint is left to resume from
  130  interrupted (Ctrl-C) outside the training loop
  143  training stopped on SIGTERM / SIGINT / SIGUSR1 or MAX_RUNTIME after saving the step it reached: rerun the
       same command to resume
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Callable, Sequence

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_NONFINITE = 3
EXIT_BUSY = 4
EXIT_STORAGE = 5
EXIT_INTERRUPTED = 130
EXIT_PREEMPTED = 143  # = optiml_jax.training.preemption.EXIT_PREEMPTED

EXIT_CODES_HELP = """exit codes:
  0    success
  1    internal error (a bug: the traceback is printed)
  2    usage or configuration error (flag, gin file/binding, unread macro, bad value, unknown task, missing path)
  3    training stopped on non-finite losses (ON_NONFINITE)
  4    MODEL_DIR is in use by another training run
  5    storage error (not writable, no space, a save failed, a damaged checkpoint, no intact checkpoint left)
  130  interrupted
  143  train: stopped on SIGTERM/SIGINT/SIGUSR1 or MAX_RUNTIME, the step reached saved (rerun to resume)
Errors you caused print one line; add --verbose for the traceback."""

log = logging.getLogger(__name__)


class CommandError(SystemExit):
    """A user error raised out of a command's `main`: `str(e)` is the message, `e.code` the exit code.

    Raising it (rather than returning a code) keeps in-process callers' `pytest.raises(SystemExit, match=...)`
    working; the message is printed by `fail` before it is raised, so a top-level exit shows it too."""

    def __init__(self, message: str, code: int = EXIT_USAGE):
        super().__init__(message)
        self.code = code


def add_verbose_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--verbose", action="store_true", help="on an error, print the full traceback too")


def with_exit_codes(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Append the exit-code table to a parser's --help (keeps an existing epilog)."""
    parser.epilog = f"{parser.epilog}\n\n{EXIT_CODES_HELP}" if parser.epilog else EXIT_CODES_HELP
    if not isinstance(parser.formatter_class, type) or not issubclass(parser.formatter_class,
                                                                        argparse.RawDescriptionHelpFormatter):
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
    return parser


def wants_verbose(argv: Sequence[str] | None) -> bool:
    return "--verbose" in list(sys.argv[1:] if argv is None else argv)


def _exit_code(e: BaseException) -> int | None:
    """The documented exit code of an error the user caused; None for an internal error."""
    from optiml_jax.checkpoints.errors import CorruptCheckpointError, NoIntactCheckpointError, StorageError
    from optiml_jax.checkpoints.hf_tensors import CheckpointError
    from optiml_jax.training.errors import ConfigValueError, NonFiniteError, RunLockedError
    from optiml_jax.training.preemption import Preempted

    if isinstance(e, Preempted):
        return EXIT_PREEMPTED
    if isinstance(e, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(e, NonFiniteError):
        return EXIT_NONFINITE
    if isinstance(e, RunLockedError):
        return EXIT_BUSY
    if isinstance(e, (StorageError, NoIntactCheckpointError, CorruptCheckpointError)):
        return EXIT_STORAGE
    if isinstance(e, (ConfigValueError, CheckpointError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
                      ValueError)):
        return EXIT_USAGE  # ValueError: this code base's configuration and input checks raise it (gin, readers)
    if isinstance(e, OSError):
        return EXIT_STORAGE  # permission denied, disk full, read-only file system on an output path
    return None


def one_line(e: BaseException) -> str:
    """The message without gin's "In call to configurable ..." trailer; the first line if it still has several."""
    text = str(e).split("\n  In call to configurable")[0].strip()
    lines = [x for x in text.splitlines() if x.strip()]
    if not lines:
        return type(e).__name__
    return lines[0] if len(lines) == 1 else lines[0] + " (...)"


def fail(message: str, code: int = EXIT_USAGE) -> CommandError:
    """Print `error: message` and return the CommandError to raise."""
    print(f"error: {message}", file=sys.stderr)
    return CommandError(f"error: {message}", code)


def run_command(body: Callable[[], int], argv: Sequence[str] | None = None) -> int:
    """Run a command's body; map what it raises to one line + exit code (traceback with --verbose)."""
    verbose = wants_verbose(argv)
    try:
        return body()
    except CommandError as e:  # already printed
        if verbose:
            traceback.print_exc()
        return int(e.code)
    except SystemExit as e:
        if isinstance(e.code, str):  # `raise SystemExit("message")`: a user error in a subcommand's own words
            print(e.code if e.code.startswith("error") else f"error: {e.code}", file=sys.stderr)
            return EXIT_USAGE
        raise  # argparse (usage errors: 2, --help: 0)
    except BaseException as e:  # noqa: BLE001 (every error ends in one line and a code)
        code = _exit_code(e)
        if code is None:
            traceback.print_exc()
            print(f"internal error: {type(e).__name__}: {one_line(e)} (please report it with the traceback above)",
                  file=sys.stderr)
            return EXIT_INTERNAL
        if verbose:
            traceback.print_exc()
        if code == EXIT_INTERRUPTED:
            print("interrupted", file=sys.stderr)
        elif code == EXIT_PREEMPTED:
            print(one_line(e), file=sys.stderr)  # not an error: the run is saved and resumes
        else:
            hint = "" if verbose else " (--verbose for the traceback)"
            print(f"error: {one_line(e)}{hint}", file=sys.stderr)
        return code
