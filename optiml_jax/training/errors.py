"""Errors the trainer raises for what a user can fix; the commands map them to exit codes (optiml_jax/cli/errors.py).
Storage errors live with the checkpoints (`optiml_jax.checkpoints.errors.StorageError`)."""

from __future__ import annotations

from optiml_jax.checkpoints.errors import StorageError  # noqa: F401  (re-exported: the trainer raises it too)


class ConfigValueError(ValueError):
    """A configured value is unusable (wrong type, out of range, not splittable over the mesh, unknown task):
    the message names the gin macro / binding and says what would work."""


class NonFiniteError(RuntimeError):
    """A step produced a non-finite loss or gradient norm and the run was configured to stop (or skipped past its
    cap)."""


class RunLockedError(RuntimeError):
    """MODEL_DIR is owned by another live training run (its lock file names process, host and start time)."""
