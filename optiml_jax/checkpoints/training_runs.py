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
import os
import pathlib
import shutil
import time
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from optiml_jax.checkpoints import integrity as integrity_lib
from optiml_jax.checkpoints.background_save import (BackgroundSaver, host_snapshot, prepare_snapshot, sum_across_processes,
                                                   use_coordination_service_barriers)
from optiml_jax.checkpoints.errors import (CheckpointMismatchError, CheckpointSaveError,
                                           CorruptCheckpointError, NoIntactCheckpointError, StorageError)
from optiml_jax.checkpoints.run_readers import CHECKPOINT_SUBDIR, INTEGRITY_KEY, _first_line
# the readers' names, still importable from here (eval, infer, resolve and users' scripts import them so):
from optiml_jax.checkpoints.run_readers import (finalized_steps_on_disk, is_training_run_dir,  # noqa: F401
                                               restore_params_from_run)
from optiml_jax.checkpoints.save_process import ProcessWriter, WriterError
from optiml_jax.paths import PathSettingError, check_reachable, is_url, user_path

log = logging.getLogger(__name__)
QUARANTINE_SUBDIR = "checkpoints_corrupt"  # damaged checkpoints are moved here, never deleted
# Pruned steps are first renamed into MODEL_DIR/checkpoints/<PRUNED_SUBDIR>/ (one atomic rename), then deleted: a
# reader beside the trainer sees a step whole or absent, never half deleted (which it would call damaged).
PRUNED_SUBDIR = "pruned"
WRITERS = ("thread", "process")  # who writes a background save: the saver thread, or an idle-priority process


# Orbax's TensorStore layer sends gs:// to its GCS driver and every other path to its file driver, which needs a
# local absolute path (orbax/checkpoint/_src/serialization/tensorstore_utils.py): no other URL can hold arrays.
ORBAX_URL_SCHEMES = ("gs",)


def orbax_dir_path(value: str | os.PathLike, setting: str) -> epath.Path:
    """`value` (MODEL_DIR, CHECKPOINT_PATH, ...) as a path Orbax can read and write: local (absolute) or a URL of
    `ORBAX_URL_SCHEMES`, its filesystem reachable; `PathSettingError` naming `setting` otherwise."""
    path = user_path(value, setting)
    if is_url(path) and os.fspath(path).split("://", 1)[0] not in ORBAX_URL_SCHEMES:
        raise PathSettingError(f"{setting} = {os.fspath(path)!r}: Orbax {ocp.__version__} keeps checkpoints on local "
                               f"paths and {', '.join(s + '://' for s in ORBAX_URL_SCHEMES)} only (TensorStore's file "
                               "driver takes local absolute paths)")
    if os.fspath(path).startswith("gs://"):
        _check_gcs_client(path, setting)
    return check_reachable(path, setting)


def _check_gcs_client(path, setting: str) -> None:
    """Orbax lists and deletes the steps of a gs:// directory through `google.cloud.storage` (its hierarchical-
    namespace check, orbax/checkpoint/_src/path/step.py), imported only then: without the package a run would
    fail at its first listing, after the devices were set up."""
    try:
        from google.cloud import storage  # noqa: F401
    except ImportError as e:
        raise PathSettingError(f"{setting} = {os.fspath(path)!r}: Orbax reads and writes gs:// checkpoints through "
                               "google-cloud-storage, which is not installed here (pip install google-cloud-storage)"
                               ) from e


def set_replica_parallel_save(enabled: bool) -> None:
    """Orbax's default on CPU/TPU splits each *replicated* array's write across its replicas, which
    compiles one slice program per (shape, replica): ~30 s for a tiny replicated model on 8 CPU devices
    versus 0.2 s without. Off by default here (it is already off by default on GPU); large TPU jobs
    with replicated (data-parallel) parameters may want it on for write bandwidth."""
    ocp.type_handlers.register_type_handler(
        jax.Array, ocp.type_handlers.ArrayHandler(use_replica_parallel=enabled), override=True)


class TrainCheckpointManager:
    """Save every `period` steps (and on demand), keep the newest `keep`, restore latest or a given step.

    Integrity (`verify`, default on): each save records, in the checkpoint's `data` item, the shape and dtype of
    every array and its checksum (`optiml_jax.checkpoints.integrity`); `restore_latest_intact` restores the newest
    checkpoint whose arrays restore *and* match those checksums. A checkpoint that fails either is reported with
    its step and path, moved to `MODEL_DIR/checkpoints_corrupt/<step>` (never deleted; a `.reason.txt` beside it
    says why) and the next older one is tried. A checkpoint that is intact but holds other shapes than the
    configured model is a `CheckpointMismatchError` (a configuration change, not damage: nothing is moved).
    Cost: one reduction over the state per save (on the background saver's thread from the host copy, or on the
    devices where Orbax's save stays on the step path) and one on the devices per restore (README "Checkpoint integrity");
    `verify=False` (gin `VERIFY_CHECKPOINTS = False`) skips both and keeps only the shape/dtype record.
    """

    def __init__(self, model_dir: str | pathlib.Path, *, period: int, keep: int | None = 3,
                 async_save: bool = True, replica_parallel_save: bool = False, verify: bool = True,
                 background: bool | None = None, writer: str = "thread"):
        set_replica_parallel_save(replica_parallel_save)
        self.directory = user_path(model_dir, "MODEL_DIR") / CHECKPOINT_SUBDIR
        self.quarantine_directory = self.directory.parent / QUARANTINE_SUBDIR
        self.verify = verify
        self.waited_s = 0.0  # how long the newest save() waited for the previous background save
        options = ocp.CheckpointManagerOptions(
            save_interval_steps=max(int(period), 1),
            max_to_keep=keep,
            enable_async_checkpointing=async_save,
            create=True,
            cleanup_tmp_directories=True,
            todelete_subdir=PRUNED_SUBDIR,  # a pruned step leaves in one rename (`_purge_pruned` deletes it)
        )
        try:
            self._manager = ocp.CheckpointManager(self.directory, options=options)
        except OSError as e:
            raise StorageError(f"cannot use checkpoint directory {self.directory}: {_os_error(e)}") from e
        # Async saves go to a background thread whole (background_save.py, also why several processes need no
        # device collective there). `background=False`: Orbax's save on the step path (perf/async_save_cost.py).
        if background is None:
            background = async_save
        if background and not async_save:
            raise ValueError("background saves need async_save=True")
        if background and jax.process_count() > 1:
            use_coordination_service_barriers()
            self._manager.reached_preemption = lambda step: False  # PreemptionWatch asks, on the main thread
        self._saver = BackgroundSaver(self._save_and_commit, name=f"checkpoint-save {self.directory}") if background else None
        self._writer = self._process_writer(writer, keep)

    def _process_writer(self, writer: str, keep: int | None) -> ProcessWriter | None:
        """`writer='process'`: periodic saves are written by an idle-priority worker process (save_process.py)."""
        if writer not in WRITERS:
            raise ValueError(f"checkpoint writer {writer!r}: must be one of {WRITERS}")
        if writer == "thread":
            return None
        if self._saver is None or jax.process_count() > 1:
            raise ValueError("the 'process' checkpoint writer needs asynchronous saves and a single process "
                             f"(async saves: {self._saver is not None}, processes: {jax.process_count()})")
        return ProcessWriter(self.directory, keep=keep, pruned_subdir=PRUNED_SUBDIR, integrity_key=INTEGRITY_KEY)

    def latest_step(self) -> int | None:
        self._settle()
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        self._settle()
        return list(self._manager.all_steps())

    def _settle(self) -> None:
        """Let a background save reach Orbax before Orbax's step list is read (it is not shared across threads)."""
        if self._saver is not None:
            self._saver.wait()

    def step_directory(self, step: int) -> pathlib.Path:
        return self.directory / str(int(step))

    @property
    def stages_saves(self) -> bool:
        """Whether a save can be staged: its host copy dispatched now (`host_copy`) and handed to `save` later."""
        return self._saver is not None

    def host_copy(self, state: Any) -> Any:
        """A host copy of `state` for a later `save(..., snapshot=...)` (dispatched, not waited for); needs a
        background saver (`stages_saves`)."""
        if self._saver is None:
            raise RuntimeError("host copies for staged saves need a background saver (async checkpoints)")
        return host_snapshot(state)

    def save(self, step: int, state: Any, data_state: dict, *, force: bool = False, final: bool = False,
             urgent: bool = False, snapshot: Any = None) -> bool:
        """Start an (async) save if `step` is due (or `force`); returns whether one started.

        Background (async): a host copy of `state` is dispatched and queued; checksums, Orbax's save and its commit
        run on the saver's thread, and this returns at once (unless the previous save is still running: then it
        waits for that one). Otherwise the checksums are computed from `state` on its devices before Orbax's save
        starts (the trainer donates the state's buffers to the next step). A failure, now or of an earlier save,
        raises `CheckpointSaveError` naming the step directory and the OS error.

        With the process writer, a periodic save goes to the idle-priority worker; a `final` one (the trainer
        stops after it) is written here at full priority. An `urgent` one (a stop with a deadline: preemption,
        MAX_RUNTIME) abandons the worker's save in flight, if any, instead of waiting for it; at the end of training
        the in-flight save is waited for (the steps no longer hold the cores, so the idle-priority worker runs).

        `snapshot`: the host copy of the state of `step`, dispatched earlier by `host_copy` (then `state` is unused):
        the trainer stages a periodic save so that the step after it is dispatched before the host waits."""
        if self._saver is None:
            self._purge_pruned()  # what the previous save pruned (its commit ran in Orbax's thread)
            return self._save_now(step, state, data_state, force=force, host_copy=False)
        self._saver.raise_error()
        if not force and not self._manager.should_save(int(step)):
            return False
        via_process = self._writer is not None and not final
        if self._writer is not None and urgent:
            abandoned = self._writer.abandon()
            if abandoned is not None:
                log.warning("abandoned the idle-priority save of step %d for the stop's save of step %d",
                            abandoned, step)
        if snapshot is None:
            snapshot = host_snapshot(state)
        self.waited_s = self._saver.submit(int(step), snapshot, dict(data_state), force, via_process)
        return True

    def _checkpoint_data(self, step: int, state: Any, data_state: dict, host_copy: bool) -> dict:
        """The JSON item of a checkpoint: the data position and the integrity record of `state`."""
        checksums = None
        if self.verify:
            checksums = self._host_checksums(step, state) if host_copy else integrity_lib.array_checksums(state)
        return {**data_state, INTEGRITY_KEY: integrity_lib.integrity_record(state, checksums)}

    def _save_now(self, step: int, state: Any, data_state: dict, *, force: bool, host_copy: bool) -> bool:
        data = self._checkpoint_data(step, state, data_state, host_copy)
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data))
        try:
            return self._manager.save(int(step), args=args, force=force)
        except Exception as e:  # noqa: BLE001 (Orbax wraps OS errors in its own types)
            raise CheckpointSaveError(f"saving checkpoint step {step} into {self.step_directory(step)} failed: "
                                      f"{_os_error(e)}") from e

    def _host_checksums(self, step: int, snapshot: Any) -> dict[str, str]:
        """`array_checksums` of the state from its host copy, on the saver thread (several processes: their partial
        sums added up through the coordination service, `background_save.sum_across_processes`)."""
        partial = integrity_lib.host_partial_checksums(snapshot)
        if jax.process_count() > 1:
            partial = sum_across_processes(f"optiml_checksums/{self.directory}/{int(step)}", partial)
        return integrity_lib.format_checksums(partial)

    def _save_and_commit(self, step: int, snapshot: Any, data_state: dict, force: bool,
                         via_process: bool = False) -> None:
        """The saver thread's job: the whole save of one host copy, its commit waited for here (off the step)."""
        if via_process:
            self._save_by_worker(step, snapshot, data_state)
            return
        self._save_now(step, snapshot, data_state, force=force, host_copy=True)
        try:
            self._manager.wait_until_finished()
        except Exception as e:  # noqa: BLE001
            raise CheckpointSaveError(f"saving checkpoint step {step} into {self.step_directory(step)} failed: "
                                      f"{_os_error(e)}") from e
        self._purge_pruned()

    def _save_by_worker(self, step: int, snapshot: Any, data_state: dict) -> None:
        """The worker adds the integrity record itself, from the bytes it saves (off this process's GIL)."""
        try:
            committed = self._writer.save(step, snapshot, dict(data_state), checksums=self.verify)
        except WriterError as e:
            raise CheckpointSaveError(f"saving checkpoint step {step} into {self.step_directory(step)} failed: "
                                      f"{e}") from e
        finally:
            self._manager.reload()  # the worker's step (and what it pruned) into this manager's step list
        if committed:
            self._purge_pruned()

    def _purge_pruned(self) -> None:
        """Delete the steps Orbax pruned (renamed into checkpoints/pruned/); process 0, local directories only
        (Orbax deletes gs:// steps itself). Best effort: a step left there is retried at the next save."""
        pruned = self.directory / PRUNED_SUBDIR
        if jax.process_index() == 0 and not is_url(pruned) and pruned.is_dir():
            shutil.rmtree(pruned, ignore_errors=True)

    def prepare(self, state: Any) -> None:
        """Compile the background saver's host copy of `state` now (0.3 s for a tiny model on a loaded CPU), so
        that the first save does not pay it on the step path. A no-op without a background saver."""
        if self._saver is not None:
            prepare_snapshot(state)

    @property
    def slowest_save_s(self) -> float:
        """The longest a background save took from its start to its commit (0 without a background saver)."""
        return self._saver.slowest_duration_s if self._saver is not None else 0.0

    def check_for_errors(self) -> None:
        """Raise `CheckpointSaveError` now if a background save has failed (cheap; the trainer polls it)."""
        if self._saver is not None:
            self._saver.raise_error()
            return
        try:
            self._manager.check_for_errors()
        except Exception as e:  # noqa: BLE001
            raise CheckpointSaveError(f"a checkpoint save into {self.directory} failed: {_os_error(e)}") from e

    def restore(self, target: Any, step: int | None = None) -> tuple[Any, dict, int]:
        """(state, data_state, step) for `step` (default: latest), placed as `target`'s shardings say.

        Verifies the checksums when the checkpoint has them (`CorruptCheckpointError` otherwise); nothing is
        moved. The trainer uses `restore_latest_intact`."""
        self._settle()
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no finalized checkpoint in {self.directory}")
        return self._restore_verified(target, int(step))

    def _restore_verified(self, target: Any, step: int) -> tuple[Any, dict, int]:
        where = f"checkpoint step {step} at {self.step_directory(step)}"
        try:
            data = dict(self._manager.restore(step, args=ocp.args.Composite(data=ocp.args.JsonRestore()))["data"])
        except Exception as e:  # noqa: BLE001
            raise CorruptCheckpointError(f"{where}: its data item (step, stream position, checksums) cannot be "
                                         f"read: {_first_line(e)}", step=step, path=str(self.step_directory(step))) from e
        record = data.pop(INTEGRITY_KEY, None)
        if record is not None:
            diff = integrity_lib.spec_differences(record.get("specs", {}), integrity_lib.array_specs(target))
            if diff:
                raise CheckpointMismatchError(
                    f"{where} holds another model or optimizer state than the one configured ({'; '.join(diff)}). "
                    "Train with the configuration it was written with, or use a new MODEL_DIR.")
        try:
            restored = self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
            state = restored["state"]
        except Exception as e:  # noqa: BLE001 (TensorStore, pytree and OS errors alike mean a damaged checkpoint)
            if record is None:  # written before integrity records: cannot tell damage from a config change
                raise
            if _caused_by(e, "IndivisibleError"):  # the configured mesh cannot hold the arrays: not damage
                raise CheckpointMismatchError(f"{where} cannot be placed on the configured mesh (a MESH_SHAPE that "
                                              f"does not divide the model): {_first_line(e)}") from e
            raise CorruptCheckpointError(f"{where} cannot be restored: {type(e).__name__}: {_first_line(e)}",
                                         step=step, path=str(self.step_directory(step))) from e
        if record is None:
            log.warning("%s has no integrity record (written by an older optiml_jax): restored unverified", where)
        elif self.verify and "checksums" in record:
            bad = integrity_lib.mismatches(record["checksums"], integrity_lib.array_checksums(state))
            if bad:
                shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
                raise CorruptCheckpointError(f"{where} failed verification: {len(bad)} of {len(record['checksums'])} "
                                             f"arrays differ from the checksums recorded when it was saved ({shown})",
                                             step=step, path=str(self.step_directory(step)))
        return state, data, step

    def restore_latest_intact(self, target: Any) -> tuple[Any, dict, int, list[dict]] | None:
        """(state, data_state, step, set_aside) of the newest checkpoint that restores and verifies, or None when
        the run has no checkpoint. Each newer one that fails is logged, moved aside (`set_aside` lists
        {"step", "path", "moved_to", "reason"}) and skipped; `NoIntactCheckpointError` when none is left."""
        set_aside: list[dict] = []
        for step in sorted(self.all_steps(), reverse=True):
            try:
                ok, error = True, None
                try:
                    result = self._restore_verified(target, step)
                except CorruptCheckpointError as e:
                    ok, error = False, e
                if not _every_process(ok):  # multi-host: one process's failure fails the checkpoint everywhere
                    raise error or CorruptCheckpointError(
                        f"checkpoint step {step} at {self.step_directory(step)} failed to restore or verify on "
                        "another process (see its log)", step=step, path=str(self.step_directory(step)))
            except CorruptCheckpointError as e:
                moved = self.set_aside(step, str(e))
                log.error("%s. Moved it to %s (not deleted); trying the next older checkpoint.", e, moved)
                set_aside.append({"step": step, "path": str(self.step_directory(step)), "moved_to": str(moved),
                                  "reason": str(e)})
                continue
            state, data, found = result
            if set_aside:
                log.warning("restored step %d, the newest intact checkpoint in %s (set aside: steps %s, in %s)",
                            found, self.directory, [s["step"] for s in set_aside], self.quarantine_directory)
            return state, data, found, set_aside
        if set_aside:
            raise NoIntactCheckpointError(
                f"no intact checkpoint in {self.directory}: steps {[s['step'] for s in set_aside]} all failed to "
                f"restore or verify and were moved to {self.quarantine_directory}. Rerun to start over from "
                "INITIAL_CHECKPOINT_PATH or random init, or copy one back by hand.")
        return None

    def set_aside(self, step: int, reason: str) -> pathlib.Path:
        """Move a damaged checkpoint to MODEL_DIR/checkpoints_corrupt/<step> (process 0; every process then
        re-reads the step list). Never deletes: an existing name gets a time suffix."""
        src = self.step_directory(step)
        dst = self.quarantine_directory / str(step)
        if dst.exists():
            dst = self.quarantine_directory / f"{step}.{time.strftime('%Y%m%d-%H%M%S')}"
        if jax.process_index() == 0:
            self.quarantine_directory.mkdir(parents=True, exist_ok=True)
            if is_url(src):  # a bucket: the filesystem's own rename (gfile copies then deletes)
                src.rename(dst)
            else:
                shutil.move(str(src), str(dst))
            (self.quarantine_directory / f"{dst.name}.reason.txt").write_text(reason + "\n")
        _barrier(f"optiml_set_aside_{step}")
        self._manager.reload()
        return dst

    def wait_until_finished(self) -> None:
        if self._saver is not None:
            self._saver.wait()
            self._saver.raise_error()
        try:
            self._manager.wait_until_finished()
        except Exception as e:  # noqa: BLE001
            raise CheckpointSaveError(f"a checkpoint save into {self.directory} failed: {_os_error(e)}") from e

    def close(self) -> None:
        if self._saver is not None:
            self._saver.close()
            if self._writer is not None:
                self._writer.close()
            try:
                self._saver.raise_error()
            except Exception as e:  # noqa: BLE001
                log.warning("closing the checkpoint manager of %s: %s", self.directory, _first_line(e))
        try:
            self._manager.close()
        except Exception as e:  # noqa: BLE001 (closing after a failed save re-raises the save's error)
            log.warning("closing the checkpoint manager of %s: %s", self.directory, _first_line(e))
        self._purge_pruned()


def _caused_by(e: BaseException, type_name: str) -> bool:
    seen, cur = set(), e
    while cur is not None and id(cur) not in seen:
        if type(cur).__name__ == type_name:
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return False


def _os_error(e: BaseException) -> str:
    """The OS error at the root of an (Orbax-wrapped) exception, else its first line."""
    seen = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, OSError) and cur.strerror:
            return f"{cur.strerror} (errno {cur.errno}): {cur.filename or ''}".rstrip(": ")
        cur = cur.__cause__ or cur.__context__
    return f"{type(e).__name__}: {_first_line(e)}"


def _every_process(ok: bool) -> bool:
    if jax.process_count() == 1:
        return ok
    from jax.experimental import multihost_utils

    return bool(np.all(multihost_utils.process_allgather(np.asarray([int(ok)], np.int32))))


def _barrier(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
