"""What a checkpoint path points at, decided in one place for the trainer, eval, infer, convert and lm-eval.

Accepted everywhere a checkpoint path is taken (INITIAL_CHECKPOINT_PATH, CHECKPOINT_PATH, `convert --orbax_dir`,
lm-eval's `checkpoint=`):
* a training run of ours: MODEL_DIR (latest finalized step, or `step=`) or one step dir `MODEL_DIR/checkpoints/<step>`;
  only the parameters are restored (no optimizer state), with the architecture from `model_config.json`;
* a parameter checkpoint of the converter: `O/config.json` + `O/params/` (Orbax);
* a Hugging Face directory of any supported family: OPT, Llama, Mistral, Qwen2 (config.json + safetensors or .bin weights);
* a metaseq checkpoint: a consolidated `.pt` file or a model-parallel set `<name>-model_part-{0..N-1}.pt` (a part's
  file or the directory holding them), merged while it is read and unpickled with an allow-list only
  (checkpoints/metaseq.py; `convert metaseq-to-orbax --trust_pickle` for a file that needs more).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from typing import Any

from optiml_jax.checkpoints.training_runs import CHECKPOINT_SUBDIR
from optiml_jax.models import OPTConfig
from optiml_jax.models.family import config_from_dict
from optiml_jax.paths import check_reachable, user_path

MODEL_CONFIG_FILE = "model_config.json"  # written by optiml_jax.training.train_loop into MODEL_DIR
KINDS = ("training_run", "orbax_params", "hugging_face", "metaseq")


class CheckpointPathError(ValueError):
    """A checkpoint path that is not one of the accepted kinds, or a step it does not have; names the path."""


@dataclasses.dataclass(frozen=True)
class CheckpointRef:
    """A resolved checkpoint: its kind, the path given, and for a training run its run dir and step."""

    kind: str
    path: pathlib.Path
    run_dir: pathlib.Path | None = None
    step: int | None = None  # training runs: the step named (None = latest finalized)

    @property
    def step_dir(self) -> pathlib.Path | None:
        """The path `restore_params_from_run` takes: the run dir (latest) or the named step's dir."""
        if self.run_dir is None:
            return None
        return self.run_dir if self.step is None else self.run_dir / CHECKPOINT_SUBDIR / str(self.step)

    def saved_config(self) -> OPTConfig | None:
        """The architecture the checkpoint was written with, when it records one (reads JSON only, no weights)."""
        if self.kind == "metaseq":
            from optiml_jax.checkpoints.metaseq import metaseq_config

            return metaseq_config(self.path)
        if self.kind == "training_run":
            f = self.run_dir / MODEL_CONFIG_FILE
            return config_from_dict(json.loads(f.read_text())) if f.is_file() else None
        f = self.path / "config.json"
        if not f.is_file():
            return None
        if self.kind == "orbax_params":
            return config_from_dict(json.loads(f.read_text()))
        from optiml_jax.checkpoints.families import config_from_hf_any

        return config_from_hf_any(json.loads(f.read_text()), str(f))


def resolve(path: str | os.PathLike, step: int | None = None, *, setting: str = "CHECKPOINT_PATH") -> CheckpointRef:
    """Classify `path` (local or a URL, `optiml_jax.paths`); `step` picks a step of a training run (an error for
    other kinds); `setting` names the macro in errors (INITIAL_CHECKPOINT_PATH for the trainer)."""
    from optiml_jax.checkpoints.metaseq import looks_like_metaseq
    from optiml_jax.checkpoints.orbax_params import is_orbax_dir

    p = check_reachable(user_path(path, setting), setting)
    if not p.exists():
        raise FileNotFoundError(f"checkpoint path ({setting}) {p} does not exist")
    if (p / CHECKPOINT_SUBDIR).is_dir():
        ref = CheckpointRef("training_run", p, p, step)
    elif p.parent.name == CHECKPOINT_SUBDIR and p.name.isdigit():
        if step is not None and step != int(p.name):
            raise CheckpointPathError(f"{p} is the checkpoint of step {p.name}, but step {step} was asked for")
        ref = CheckpointRef("training_run", p, p.parent.parent, int(p.name))
    elif is_orbax_dir(p):
        ref = CheckpointRef("orbax_params", p)
    elif (p / "config.json").is_file():
        ref = CheckpointRef("hugging_face", p)
    elif looks_like_metaseq(p):
        ref = CheckpointRef("metaseq", p)
    else:
        raise CheckpointPathError(f"{p}: not a checkpoint: expected a training MODEL_DIR (with {CHECKPOINT_SUBDIR}/), "
                              "a step dir MODEL_DIR/checkpoints/<step>, a converter Orbax dir (config.json + "
                              "params/), a Hugging Face OPT/Llama/Mistral/Qwen2 dir (config.json + weights) or a metaseq .pt checkpoint "
                              "(file, or dir of *-model_part-<i>.pt)")
    if step is not None and ref.kind != "training_run":
        raise CheckpointPathError(f"{p} is a {ref.kind.replace('_', ' ')} checkpoint with no steps; --step applies to "
                              "training runs only")
    if ref.kind == "training_run" and ref.step is not None:
        if not (ref.run_dir / CHECKPOINT_SUBDIR / str(ref.step)).is_dir():
            raise CheckpointPathError(f"{ref.run_dir}: no checkpoint of step {ref.step}; it has steps "
                                  f"{available_steps(ref.run_dir)}")
    return ref


def available_steps(run_dir: str | os.PathLike) -> list[int]:
    d = user_path(run_dir, "CHECKPOINT_PATH") / CHECKPOINT_SUBDIR
    return sorted(int(x.name) for x in d.iterdir() if x.name.isdigit()) if d.is_dir() else []


def load_training_params(ref: CheckpointRef, target: Any | None = None) -> tuple[OPTConfig, Any, int]:
    """(config, params, step) from a training run's checkpoint (parameters only).

    `target`: abstract params carrying the shardings to restore onto (the trainer's); default: one device,
    in the layout (scanned or not) the run was trained with.
    """
    import jax

    from optiml_jax.checkpoints.orbax_params import abstract_params
    from optiml_jax.checkpoints.training_runs import restore_params_from_run
    from optiml_jax.models import to_layout

    config = ref.saved_config()
    if target is None:
        if config is None:
            raise FileNotFoundError(f"checkpoint {ref.run_dir}: training run without {MODEL_CONFIG_FILE}")
        device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        target = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=device),
                              abstract_params(config))
        target = to_layout(target, config.scan_layers)
    params, found_step = restore_params_from_run(ref.step_dir, target)
    return config, params, found_step


def load_checkpoint(path: str | os.PathLike, step: int | None = None, *,
                    scanned: bool | None = None, device_sharding: Any = None) -> tuple[OPTConfig, Any]:
    """(config, float32 params) from any accepted checkpoint path (`scanned`: the layout wanted; None = as saved
    for training runs, unrolled otherwise). `device_sharding` (e.g. one device's, or a mesh's replicated
    `NamedSharding`): a metaseq checkpoint is then streamed onto it tensor by tensor (`load_metaseq(target=...)`:
    the host holds one merged tensor, never the model) and its params come back as jax arrays placed there; other
    kinds are read as host arrays as before."""
    config, params, _ = load_checkpoint_and_step(path, step, scanned=scanned, device_sharding=device_sharding)
    return config, params


def load_checkpoint_and_step(path: str | os.PathLike, step: int | None = None, *, scanned: bool | None = None,
                             device_sharding: Any = None) -> tuple[OPTConfig, Any, int | None]:
    """`load_checkpoint` plus the training step whose parameters were read (None for other kinds). Why: a run
    that is training saves and prunes steps while a reader loads its latest one, so the step must come from the
    read itself; listing the run's steps afterwards (`checkpoint_step`) can name a newer step than was read."""
    from optiml_jax.checkpoints.orbax_params import load_params
    from optiml_jax.models import to_layout

    ref = resolve(path, step)
    if ref.kind == "training_run":
        config, params, found = load_training_params(ref)
        if scanned is not None and scanned != config.scan_layers:
            params = to_layout(params, scanned)
            config = config.replace(scan_layers=scanned)
        return config, params, found
    if ref.kind == "metaseq":
        from optiml_jax.checkpoints.metaseq import load_metaseq

        if device_sharding is not None:
            return (*_load_metaseq_onto(ref, bool(scanned), device_sharding), None)
        return (*load_metaseq(ref.path, scanned=bool(scanned)), None)
    return (*load_params(ref.path, scanned=bool(scanned)), None)


def _load_metaseq_onto(ref: "CheckpointRef", scanned: bool, sharding: Any) -> tuple[OPTConfig, Any]:
    import jax

    from optiml_jax.checkpoints.metaseq import load_metaseq
    from optiml_jax.checkpoints.orbax_params import abstract_params
    from optiml_jax.models import to_layout

    config = ref.saved_config().replace(scan_layers=scanned)
    shapes = abstract_params(config)  # unrolled ShapeDtypeStructs (nothing allocated)
    if scanned:
        shapes = jax.eval_shape(lambda t: to_layout(t, True), shapes)
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), shapes)
    return load_metaseq(ref.path, target=target)


def checkpoint_step(path: str | os.PathLike) -> int | None:
    """The training step a checkpoint path refers to (latest for a run dir), or None when not a training run."""
    try:
        ref = resolve(path)
    except (FileNotFoundError, CheckpointPathError):
        return None
    if ref.kind != "training_run":
        return None
    if ref.step is not None:
        return ref.step
    steps = available_steps(ref.run_dir)
    return steps[-1] if steps else None
