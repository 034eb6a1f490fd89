"""What a resume may change and what it may not: checked before anything in MODEL_DIR is written or moved.

Why a module of its own: a resume that silently continued with another batch size skipped or repeated examples
(the stream is step-indexed), and a mesh that cannot hold the model made healthy checkpoints look damaged (their
restore failed, so they were set aside). Both are configuration errors, found here and reported as such.
"""

from __future__ import annotations

import logging
import pathlib

import optax

from optiml_jax.models import ModelConfig
from optiml_jax.training import train_state
from optiml_jax.training.errors import ConfigValueError
from optiml_jax.training.partitioning import Partitioner
from optiml_jax.training.run_config import MACRO_OF

log = logging.getLogger(__name__)


def mesh_fit_error(config: ModelConfig, tx: optax.GradientTransformation, part: Partitioner) -> None:
    """ConfigValueError naming MESH_SHAPE when the mesh does not divide a parameter the rules split."""
    misfits = train_state.mesh_misfits(config, tx, part)
    if misfits:
        more = f" and {len(misfits) - 3} more" if len(misfits) > 3 else ""
        raise ConfigValueError(
            f"MESH_SHAPE gives {dict(part.mesh.shape)}, which does not divide the model: {'; '.join(misfits[:3])}"
            f"{more}. Use a MESH_SHAPE whose axes divide these sizes (or partitioning rules that do not split them).")


def check_resume(data_state: dict, run_shape: dict, step: int, directory) -> list[str]:
    """A resume with another BATCH_SIZE or TASK_FEATURE_LENGTHS than the checkpoint's is refused (the stream is
    step-indexed: its batches would skip or repeat examples); another TRAIN_STEPS re-shapes the learning-rate
    schedule, which is said in one line (returned as a start-up warning). `run_shape` is what the trainer saves
    with every checkpoint's data position; checkpoints written before these records are not checked."""
    where = f"the checkpoint of step {step} in {directory}"
    examples = data_state.get("examples")
    for arg in ("batch_size", "task_feature_lengths"):
        if arg in data_state and data_state[arg] != run_shape[arg]:
            macro = MACRO_OF[arg]
            raise ConfigValueError(
                f"{macro} (DataConfig.{arg}) = {run_shape[arg]!r} but {where} was trained with {data_state[arg]!r}: "
                f"resuming would skip or repeat examples (data position: step {step}"
                f"{f', {examples} examples' if examples is not None else ''}). Resume with {macro} = "
                f"{data_state[arg]!r}, or train into a new MODEL_DIR with INITIAL_CHECKPOINT_PATH = "
                f"{pathlib.Path(directory).parent}.")
    old = data_state.get("train_steps")
    if old is None or old == run_shape["train_steps"]:
        return []
    msg = (f"TRAIN_STEPS changed on resume at step {step}: the run now ends at step {run_shape['train_steps']} "
           f"(was {old}); the learning-rate schedule is re-shaped to end there")
    log.warning(msg)
    return [msg]
