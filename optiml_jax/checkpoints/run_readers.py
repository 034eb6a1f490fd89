"""Reading a training run's checkpoints from outside the trainer (eval, infer, convert, fine-tuning from one
of our runs), possibly while that run is still training into the same MODEL_DIR.

Why a module of its own: a reader never writes, and its hazards are not the trainer's. The trainer prunes steps
(renamed into `checkpoints/pruned/`, then deleted) and finalizes new ones while a reader lists and opens them, so a
step that disappears under a reader is not damage: the reader takes the newest step there now, and only a step
whose files fail to read *and* whose directory stays is reported as `CorruptCheckpointError`. The layout names
(`CHECKPOINT_SUBDIR`, `INTEGRITY_KEY`) live here because both sides read them; `training_runs` writes them.
"""

from __future__ import annotations

import logging
import pathlib
import time
from typing import Any

import jax
import orbax.checkpoint as ocp

from optiml_jax.checkpoints import integrity as integrity_lib
from optiml_jax.checkpoints.errors import CheckpointVanishedError, CorruptCheckpointError
from optiml_jax.paths import user_path

log = logging.getLogger(__name__)
CHECKPOINT_SUBDIR = "checkpoints"
INTEGRITY_KEY = "integrity"  # in each checkpoint's data item: array specs and checksums
VANISH_WAIT_S = 2.0  # a reader whose step failed to read waits this long for it to vanish before calling it damage


def _first_line(e: BaseException) -> str:
    lines = [x for x in str(e).splitlines() if x.strip()]
    return lines[0].strip() if lines else type(e).__name__


def finalized_steps_on_disk(model_dir: str | pathlib.Path) -> list[int]:
    """Steps with a finalized directory in MODEL_DIR/checkpoints (a listing only: nothing is opened or verified)."""
    d = user_path(model_dir, "MODEL_DIR") / CHECKPOINT_SUBDIR
    try:
        return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit() and p.is_dir())
    except OSError:
        return []


def is_training_run_dir(path: str | pathlib.Path) -> bool:
    return (user_path(path, "CHECKPOINT_PATH") / CHECKPOINT_SUBDIR).is_dir()


def restore_params_from_run(path: str | pathlib.Path, params_target: Any, step: int | None = None, *,
                            verify: bool = True) -> tuple[Any, int]:
    """Only the parameters of a training-run checkpoint (fine-tuning from one of our runs, eval, infer, convert).

    `path` is a MODEL_DIR of ours (latest finalized step unless `step`) or one step directory
    (`.../checkpoints/<step>`). Optimizer state is not read (`partial_restore`). The parameters are verified
    against the checksums recorded at save (when the checkpoint has them): `CorruptCheckpointError` names the
    step and path of a damaged one.
    """
    path = user_path(path, "INITIAL_CHECKPOINT_PATH")
    if path.parent.name == CHECKPOINT_SUBDIR and path.name.isdigit():
        return _restore_params(path.parent.parent, int(path.name), params_target, verify)
    if step is not None:
        return _restore_params(path, int(step), params_target, verify)
    # The latest step of a run that may be training right now: the trainer can prune (or replace) the step this
    # reader picked while it reads. A step that vanished is not damage: take the newest one that is there now.
    tried: list[int] = []
    while True:
        step = _latest_step_listed(path)
        if step is None:
            raise FileNotFoundError(f"INITIAL_CHECKPOINT_PATH={path}: no finalized checkpoint under "
                                    f"{path / CHECKPOINT_SUBDIR}" + (f" (steps {tried} were removed while being "
                                                                     "read)" if tried else ""))
        try:
            return _restore_params(path, int(step), params_target, verify)
        except CheckpointVanishedError:
            if step in tried or len(tried) >= 10:
                raise
            tried.append(step)
            log.warning("checkpoint step %d of %s was removed while being read (the run is training and pruned "
                        "it); reading the newest step now", step, path)


def _latest_step_listed(run_dir: pathlib.Path) -> int | None:
    """The newest finalized step of a run, or None. A listing that ran while the trainer finalized one step and
    pruned the one before can find neither (the new one still a tmp dir, the old one gone when its metadata was
    read): a run with a step on disk is listed again."""
    for _ in range(10):
        manager = _read_only_manager(run_dir)
        try:
            step = manager.latest_step()
        finally:
            manager.close()
        if step is not None or not finalized_steps_on_disk(run_dir):
            return step
        time.sleep(0.05)
    return None


def _read_only_manager(run_dir: pathlib.Path) -> ocp.CheckpointManager:
    """A read-only manager of a run's checkpoints. Orbax's listing opens each step's metadata, so a step that the
    trainer prunes meanwhile fails it (FileNotFoundError, NotADirectoryError): list again, a few times."""
    for attempt in range(10):
        try:
            return ocp.CheckpointManager(run_dir / CHECKPOINT_SUBDIR, options=ocp.CheckpointManagerOptions(read_only=True))
        except (FileNotFoundError, NotADirectoryError):
            if attempt == 9 or not (run_dir / CHECKPOINT_SUBDIR).is_dir():
                raise
            time.sleep(0.05)
    raise AssertionError("unreachable")


def _vanished(step_dir: pathlib.Path, wait_s: float | None = None) -> bool:
    """Whether `step_dir` is gone, or goes within `wait_s`: a step whose read failed while a trainer deleted it
    file by file (Orbax without `todelete_subdir`, older runs) still exists for a moment. A damaged checkpoint
    stays, and costs this wait once."""
    deadline = time.monotonic() + (VANISH_WAIT_S if wait_s is None else wait_s)
    while step_dir.is_dir():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _restore_params(run_dir: pathlib.Path, step: int, params_target: Any, verify: bool) -> tuple[Any, int]:
    manager = _read_only_manager(run_dir)
    restore_args = jax.tree.map(lambda s: ocp.ArrayRestoreArgs(sharding=s.sharding, dtype=s.dtype), params_target)
    args = ocp.args.Composite(state=ocp.args.PyTreeRestore(
        item={"params": params_target}, restore_args={"params": restore_args}, partial_restore=True))
    where = f"checkpoint step {step} at {run_dir / CHECKPOINT_SUBDIR / str(step)}"
    try:
        restored = manager.restore(int(step), args=args)
        data = dict(manager.restore(int(step), args=ocp.args.Composite(data=ocp.args.JsonRestore()))["data"])
    except Exception as e:  # noqa: BLE001
        if _vanished(run_dir / CHECKPOINT_SUBDIR / str(step)):  # removed meanwhile (pruned), not damaged
            raise CheckpointVanishedError(f"{where} was removed while being read (a run training into "
                                          f"{run_dir} pruned it); it now has steps "
                                          f"{finalized_steps_on_disk(run_dir)}") from e
        raise CorruptCheckpointError(f"{where} cannot be restored: {type(e).__name__}: {_first_line(e)}", step=step,
                                     path=str(run_dir / CHECKPOINT_SUBDIR / str(step))) from e
    finally:
        manager.close()
    params = restored["state"]["params"]
    recorded = {k: v for k, v in data.get(INTEGRITY_KEY, {}).get("checksums", {}).items() if k.startswith("params/")}
    if verify and recorded:
        bad = integrity_lib.mismatches(recorded, integrity_lib.array_checksums({"params": params}))
        if bad:
            raise CorruptCheckpointError(f"{where} failed verification: {len(bad)} parameter arrays differ from the "
                                         f"checksums recorded when it was saved ({', '.join(bad[:3])})", step=step,
                                         path=str(run_dir / CHECKPOINT_SUBDIR / str(step)))
    return params, int(step)
