"""Orbax checkpoints of the train state plus the data position, with exact resume.

Layout: `MODEL_DIR/checkpoints/<step>/{state,data}`. `state` is the sharded TrainState
(`ocp.args.StandardSave`, each process writes its own shards, asynchronously); `data` is JSON
(`ocp.args.JsonSave`): the step and the stream's own state. Orbax writes each step into a temporary
directory and renames it on finalize, so a checkpoint is complete or absent; `CheckpointManager`
lists only finalized steps, so a half-written tmp dir left by a killed process is ignored on restore
(and removed by `cleanup_tmp_directories`).

Restore takes a target of `jax.ShapeDtypeStruct`s that carry the *current* mesh's shardings, so a
checkpoint saved on one mesh restores onto any other (8 devices -> 1 or 4, FSDP -> data parallel).
"""

from __future__ import annotations

import logging
import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp

log = logging.getLogger(__name__)
CHECKPOINT_SUBDIR = "checkpoints"


def set_replica_parallel_save(enabled: bool) -> None:
    """Orbax's default on CPU/TPU splits each *replicated* array's write across its replicas, which
    compiles one slice program per (shape, replica): ~30 s for a tiny replicated model on 8 CPU devices
    versus 0.2 s without. Off by default here (it is already off by default on GPU); large TPU jobs
    with replicated (data-parallel) parameters may want it on for write bandwidth."""
    ocp.type_handlers.register_type_handler(
        jax.Array, ocp.type_handlers.ArrayHandler(use_replica_parallel=enabled), override=True)


class TrainCheckpointManager:
    """Save every `period` steps (and on demand), keep the newest `keep`, restore latest or a given step."""

    def __init__(self, model_dir: str | pathlib.Path, *, period: int, keep: int | None = 3,
                 async_save: bool = True, replica_parallel_save: bool = False):
        set_replica_parallel_save(replica_parallel_save)
        self.directory = pathlib.Path(model_dir).absolute() / CHECKPOINT_SUBDIR
        options = ocp.CheckpointManagerOptions(
            save_interval_steps=max(int(period), 1),
            max_to_keep=keep,
            enable_async_checkpointing=async_save,
            create=True,
            cleanup_tmp_directories=True,
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(self, step: int, state: Any, data_state: dict, *, force: bool = False) -> bool:
        """Start an (async) save if `step` is due (or `force`); returns whether one started."""
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state))
        return self._manager.save(int(step), args=args, force=force)

    def restore(self, target: Any, step: int | None = None) -> tuple[Any, dict, int]:
        """(state, data_state, step) for `step` (default: latest), placed as `target`'s shardings say."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no finalized checkpoint in {self.directory}")
        args = ocp.args.Composite(state=ocp.args.StandardRestore(target), data=ocp.args.JsonRestore())
        restored = self._manager.restore(int(step), args=args)
        return restored["state"], dict(restored["data"]), int(step)

    def wait_until_finished(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()


def is_training_run_dir(path: str | pathlib.Path) -> bool:
    return (pathlib.Path(path) / CHECKPOINT_SUBDIR).is_dir()


def restore_params_from_run(path: str | pathlib.Path, params_target: Any, step: int | None = None) -> tuple[Any, int]:
    """Only the parameters of a training-run checkpoint (fine-tuning from one of our runs).

    `path` is a MODEL_DIR of ours (latest finalized step unless `step`) or one step directory
    (`.../checkpoints/<step>`). Optimizer state is not read (`partial_restore`).
    """
    path = pathlib.Path(path).absolute()
    if path.parent.name == CHECKPOINT_SUBDIR and path.name.isdigit():
        run_dir, step = path.parent.parent, int(path.name)
    else:
        run_dir = path
    manager = ocp.CheckpointManager(run_dir / CHECKPOINT_SUBDIR, options=ocp.CheckpointManagerOptions(read_only=True))
    step = manager.latest_step() if step is None else step
    if step is None:
        raise FileNotFoundError(f"INITIAL_CHECKPOINT_PATH={path}: no finalized checkpoint under {run_dir / CHECKPOINT_SUBDIR}")
    restore_args = jax.tree.map(lambda s: ocp.ArrayRestoreArgs(sharding=s.sharding, dtype=s.dtype), params_target)
    args = ocp.args.Composite(state=ocp.args.PyTreeRestore(
        item={"params": params_target}, restore_args={"params": restore_args}, partial_restore=True))
    restored = manager.restore(int(step), args=args)
    manager.close()
    return restored["state"]["params"], int(step)
