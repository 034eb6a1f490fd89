"""Orbax parameter checkpoints written by `python -m optiml_jax.convert hf-to-orbax`, and `load_params`.

Layout of a converted checkpoint directory `O` (what the trainer reads for INITIAL_CHECKPOINT_PATH):

    O/config.json     config.to_json() (optiml_jax field names, not Hugging Face's; a Llama-family config
                      carries "family": "llama", an OPT config no family field)
    O/params/         orbax.checkpoint.StandardCheckpointer PyTree: the params dict in the UNROLLED
                      layout, exactly the tree `OPT(config).init(...)["params"]` returns once unboxed,
                      i.e. {"decoder": {"embed_tokens": {"embedding": f32[V, E]},
                      "layers_0": {...}, ...}}, all float32. A scanned model stacks after restoring
                      (`optiml_jax.models.to_layout`).

To restore sharded straight onto a mesh, pass `jax.ShapeDtypeStruct`s with `sharding=` for the
unrolled tree (`abstract_params(config)` gives the shapes) to
`StandardCheckpointer().restore(O / "params", target)`.

`save_orbax_streamed` writes the same layout from `LazyArray` leaves, each materialized only when Orbax writes it
and dropped once written, so converting a checkpoint larger than RAM (metaseq-to-orbax) holds one tensor at a time.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
from typing import Any, Callable

import numpy as np

from optiml_jax.checkpoints.hf_tensors import HF_CONFIG, CheckpointError
from optiml_jax.models.config import OPTConfig
from optiml_jax.models.family import ModelConfig, config_from_dict, model_for
from optiml_jax.paths import local_only, user_path

CONFIG_FILE = "config.json"
PARAMS_DIR = "params"


def abstract_params(config: ModelConfig) -> Any:
    """ShapeDtypeStructs of the unrolled params tree for `config` (nothing is allocated)."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    unrolled = config.replace(scan_layers=False, remat_policy="none")
    boxed = jax.eval_shape(lambda: model_for(unrolled).init(jax.random.key(0), jnp.ones((1, 2), jnp.int32)))["params"]
    return nn.unbox(boxed)


def save_orbax(config: ModelConfig, params: Any, directory: str | os.PathLike) -> pathlib.Path:
    """Write `params` (any layout; stored unrolled) and the config to an Orbax checkpoint directory."""
    import flax.linen as nn
    import orbax.checkpoint as ocp

    from optiml_jax.models import unstack_layers

    directory = user_path(directory, "--out_dir")
    directory.mkdir(parents=True, exist_ok=True)
    params = unstack_layers(nn.unbox(params))
    ckptr = ocp.StandardCheckpointer()
    ckptr.save(directory / PARAMS_DIR, params, force=True)
    ckptr.wait_until_finished()
    (directory / CONFIG_FILE).write_text(config.to_json())
    return directory


@dataclasses.dataclass(frozen=True)
class LazyArray:
    """A leaf for `save_orbax_streamed`: shape and dtype now, the values (`materialize()`) only when written."""

    shape: tuple[int, ...]
    dtype: np.dtype
    materialize: Callable[[], np.ndarray]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * np.dtype(self.dtype).itemsize


LAZY_CHUNK_BYTES = 16 << 20  # zarr chunk of a lazily written array: bounds Tensorstore's compression buffers


def _lazy_handler():
    """Orbax's numpy handler, writing one `LazyArray` after another: materialize, write, await, drop (the stock
    handler writes every leaf of the tree concurrently, i.e. needs all of them in memory). What it writes is what
    the stock handler writes for the materialized array, so `load_orbax` (and any Orbax restore) reads it."""
    import orbax.checkpoint as ocp

    class LazyNumpyHandler(ocp.type_handlers.NumpyHandler):
        def __init__(self):
            super().__init__(deepcopy_host_arrays=False)

        async def _background_serialize(self, values, infos, args=None):
            for value, info, arg in zip(values, infos, args or [ocp.SaveArgs()] * len(values)):
                if arg.chunk_byte_size is None:  # one zarr chunk per array (Orbax's default) is compressed whole
                    arg = dataclasses.replace(arg, chunk_byte_size=LAZY_CHUNK_BYTES)
                array = value.materialize()
                if tuple(array.shape) != tuple(value.shape) or array.dtype != value.dtype:
                    raise ValueError(f"{info.name}: materialized {array.dtype}{list(array.shape)}, announced "
                                     f"{np.dtype(value.dtype)}{list(value.shape)}")
                await super()._background_serialize([array], [info], [arg])
                del array

    return LazyNumpyHandler()


def save_orbax_streamed(config: ModelConfig, leaves: Any, directory: str | os.PathLike) -> pathlib.Path:
    """Write a params tree (unrolled layout) of `LazyArray` leaves as `save_orbax` would, one leaf in memory at a
    time; the tree's structure and shapes are checked against `abstract_params(config)` before anything is read."""
    import jax
    import orbax.checkpoint as ocp

    want = jax.tree_util.tree_flatten_with_path(abstract_params(config))[0]
    got = jax.tree_util.tree_flatten_with_path(leaves, is_leaf=lambda x: isinstance(x, LazyArray))[0]
    shapes = lambda flat: {jax.tree_util.keystr(k): tuple(v.shape) for k, v in flat}  # noqa: E731
    if shapes(want) != shapes(got):
        diff = sorted(set(shapes(want).items()) ^ set(shapes(got).items()))
        raise ValueError(f"lazy params tree does not match the model of its config: {diff[:3]}")
    directory = user_path(directory, "--out_dir")
    directory.mkdir(parents=True, exist_ok=True)
    registry = ocp.type_handlers.create_type_handler_registry(
        (LazyArray, _lazy_handler()),
        *[(t, ocp.type_handlers.get_type_handler(t)) for t in ocp.type_handlers.supported_types()])
    ckptr = ocp.Checkpointer(ocp.PyTreeCheckpointHandler(type_handler_registry=registry))
    ckptr.save(directory / PARAMS_DIR, args=ocp.args.PyTreeSave(leaves), force=True)
    (directory / CONFIG_FILE).write_text(config.to_json())
    return directory


def is_orbax_dir(directory: str | os.PathLike) -> bool:
    d = user_path(directory, "CHECKPOINT_PATH")
    return (d / PARAMS_DIR).is_dir() and (d / CONFIG_FILE).is_file()


def load_orbax(directory: str | os.PathLike, *, scanned: bool = False) -> tuple[ModelConfig, dict]:
    """(config, float32 numpy params) from a directory written by `save_orbax`."""
    import orbax.checkpoint as ocp

    from optiml_jax.models import to_layout

    directory = user_path(directory, "CHECKPOINT_PATH")
    if not is_orbax_dir(directory):
        raise CheckpointError(directory, [f"not an optiml_jax Orbax checkpoint: expected {CONFIG_FILE} and "
                                          f"{PARAMS_DIR}/ inside"])
    config = config_from_dict(json.loads((directory / CONFIG_FILE).read_text()))
    target = abstract_params(config)
    try:
        params = ocp.StandardCheckpointer().restore(directory / PARAMS_DIR, target)
    except (ValueError, KeyError) as e:
        raise CheckpointError(directory, [f"stored params do not match {CONFIG_FILE}: {e}"]) from e
    import jax

    params = jax.tree.map(lambda x: np.asarray(x, np.float32), params)
    return config, to_layout(params, scanned)


def load_params(path: str | os.PathLike, *, scanned: bool = False) -> tuple[OPTConfig | ModelConfig, dict]:
    """(config, float32 numpy params) from an Orbax dir written by the converter CLI or an HF directory (OPT,
    Llama, Mistral or Qwen2, picked by config.json's model_type)."""
    path = user_path(path, "CHECKPOINT_PATH")
    if is_orbax_dir(path):
        return load_orbax(path, scanned=scanned)
    if (path / HF_CONFIG).is_file():
        path = local_only(path, "CHECKPOINT_PATH", "the Hugging Face loader (safetensors / torch)")
        from optiml_jax.checkpoints.families import load_hf

        return load_hf(path, scanned=scanned)
    raise CheckpointError(path, [f"neither an Orbax checkpoint ({CONFIG_FILE} + {PARAMS_DIR}/) nor a Hugging Face "
                                 f"OPT directory ({HF_CONFIG} + weights)"])
