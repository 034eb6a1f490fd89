"""What can go wrong with a training run's checkpoints, as exception types the commands map to exit codes
(optiml_jax/cli/errors.py)."""

from __future__ import annotations


class StorageError(OSError):
    """MODEL_DIR or its checkpoints/ cannot be written (permissions, read-only file system, no free space) or a
    save failed; the message names the path and the OS error."""


class CheckpointSaveError(StorageError):
    """A checkpoint save failed (synchronously or in Orbax's background thread)."""


class CorruptCheckpointError(RuntimeError):
    """One checkpoint failed to restore or to verify against its recorded checksums (names step and path)."""

    def __init__(self, message: str, *, step: int, path: str):
        super().__init__(message)
        self.step, self.path = step, path


class NoIntactCheckpointError(RuntimeError):
    """Every checkpoint of a run failed to restore or verify (each was moved aside, none deleted)."""


class CheckpointMismatchError(ValueError):
    """A checkpoint is intact but was written for another model or optimizer than the one configured."""


class CheckpointVanishedError(FileNotFoundError):
    """A checkpoint was removed while it was being read (a run training beside the reader pruned it): not damage.
    Readers of a run's latest step retry with the newest step; a step asked for by number is this error (exit 2)."""
