"""Hugging Face checkpoint directories, for every model family: which files hold the tensors, the one reader loop
(`load_hf_directory`, driven by a family's `HFFamily`: its config reader, tensor map and key rules) and the one
writer (`write_hf_checkpoint`), both streaming one tensor at a time.

Why streaming: a 175B model is 700 GB in float32. Loading reads each source tensor (safetensors via
`safe_open`, .bin via `torch.load(mmap=True)`), converts it and drops it, so only the output copy lives
in memory; saving converts each tensor as a shard is filled and writes the shard as soon as it is full.
A family module (`hf.py` for OPT, `hf_llama.py` for Llama / Mistral / Qwen2) says only what differs: its
`config.json` fields and its `TensorSpec` list (HF key, our path, the transform between the two layouts).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import pickle
from typing import Any, Callable, Iterable, Iterator

import numpy as np

HF_CONFIG = "config.json"
SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
TORCH_BIN = "pytorch_model.bin"
TORCH_BIN_INDEX = "pytorch_model.bin.index.json"
DEFAULT_MAX_SHARD_BYTES = 5 * 10**9  # transformers' own default shard size


class CheckpointError(ValueError):
    """A checkpoint directory or config that cannot be converted; the message lists every problem."""

    def __init__(self, where: str | os.PathLike, problems: list[str], kind: str = "OPT"):
        self.problems = list(problems)
        super().__init__(f"{where}: cannot convert this {kind} checkpoint:\n  - " + "\n  - ".join(self.problems))


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """One HF tensor and where it lives in our tree."""

    hf_key: str  # without the optional "model." prefix, e.g. "decoder.layers.0.fc1.weight"
    path: tuple[str, ...]  # unrolled layout, e.g. ("decoder", "layers_0", "fc1", "kernel")
    hf_shape: tuple[int, ...]
    to_ours: Callable[[np.ndarray], np.ndarray]
    to_hf: Callable[[np.ndarray], np.ndarray]
    layer: int | None = None


def as_is(x):
    return x


def transposed(x):
    return x.T


class CheckpointFiles:
    """Key -> file index of an HF checkpoint directory; reads tensors lazily, one at a time."""

    def __init__(self, directory: pathlib.Path):
        self.directory = directory
        d = directory
        if (d / SAFETENSORS_INDEX).is_file():
            self.format, self.key_to_file = "safetensors", self._read_index(d / SAFETENSORS_INDEX)
        elif (d / SAFETENSORS).is_file():
            self.format, self.key_to_file = "safetensors", None
            self.files = [SAFETENSORS]
        elif (d / TORCH_BIN_INDEX).is_file():
            self.format, self.key_to_file = "torch", self._read_index(d / TORCH_BIN_INDEX)
        elif (d / TORCH_BIN).is_file():
            self.format, self.key_to_file = "torch", None
            self.files = [TORCH_BIN]
        else:
            raise CheckpointError(d, [f"no weights found: expected one of {SAFETENSORS}, {SAFETENSORS_INDEX}, "
                                      f"{TORCH_BIN}, {TORCH_BIN_INDEX}"])
        if self.key_to_file is not None:
            self.files = sorted(set(self.key_to_file.values()))
        missing = [f for f in self.files if not (d / f).is_file()]
        if missing:
            raise CheckpointError(d, [f"shard file {f} listed in the index is missing" for f in missing])
        self._torch_cache: tuple[str, dict] | None = None

    @staticmethod
    def _read_index(path: pathlib.Path) -> dict[str, str]:
        try:
            return dict(json.loads(path.read_text())["weight_map"])
        except (KeyError, ValueError) as e:
            raise CheckpointError(path, [f"not a valid sharded-checkpoint index ({e})"]) from e

    def _torch_state(self, filename: str) -> dict:
        """One .bin shard, memory-mapped (only the most recent shard is kept open)."""
        if self._torch_cache is None or self._torch_cache[0] != filename:
            import torch

            self._torch_cache = None
            path = self.directory / filename
            try:
                try:
                    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
                except RuntimeError:  # legacy (non-zip) serialisation cannot be memory-mapped
                    state = torch.load(path, map_location="cpu", weights_only=True)
            except pickle.UnpicklingError as e:  # a user's file, not a bug: exit 2 naming it and why
                from optiml_jax.checkpoints.metaseq_pickle import UnsafePickleError, refusal_reason

                raise UnsafePickleError(f"{path}: torch refused to unpickle this checkpoint ({refusal_reason(e)}); "
                                        "a .bin checkpoint is read with weights_only=True (tensors only)") from e
            self._torch_cache = (filename, state)
        return self._torch_cache[1]

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Every stored key and its shape, without reading tensor data."""
        out = {}
        for filename in self.files:
            if self.format == "safetensors":
                from safetensors import safe_open

                with safe_open(self.directory / filename, framework="numpy") as f:
                    for key in f.keys():
                        out[key] = tuple(f.get_slice(key).get_shape())
            else:
                for key, t in self._torch_state(filename).items():
                    if hasattr(t, "shape"):
                        out[key] = tuple(t.shape)
        return out

    def iter_tensors(self, keys: set[str]) -> Iterator[tuple[str, np.ndarray]]:
        """(key, float32 array) for `keys`, file by file; each array is a fresh copy owned by the caller."""
        for filename in self.files:
            if self.format == "safetensors":
                from safetensors import safe_open

                with safe_open(self.directory / filename, framework="pt" if self._needs_torch(filename) else "numpy") as f:
                    for key in f.keys():
                        if key in keys:
                            yield key, _to_float32(f.get_tensor(key))
            else:
                state = self._torch_state(filename)
                for key in list(state):
                    if key in keys:
                        yield key, _to_float32(state[key])
        self._torch_cache = None

    def _needs_torch(self, filename: str) -> bool:
        """numpy cannot hold bfloat16 safetensors; read those through torch."""
        from safetensors import safe_open

        with safe_open(self.directory / filename, framework="numpy") as f:
            try:
                return any(f.get_slice(k).get_dtype() == "BF16" for k in f.keys())
            except AttributeError:
                return False


def _to_float32(t: Any) -> np.ndarray:
    if hasattr(t, "detach"):  # torch tensor
        t = t.detach().float().numpy()
    return np.array(t, dtype=np.float32, copy=True)


def _strip(key: str) -> str:
    return key[len("model."):] if key.startswith("model.") else key


def set_leaf(tree: dict, path: tuple[str, ...], value: Any) -> None:
    """`tree[path[0]][path[1]]... = value`, creating the dicts on the way."""
    for name in path[:-1]:
        tree = tree.setdefault(name, {})
    tree[path[-1]] = value



def params_tree(converted: Iterable[tuple[TensorSpec, np.ndarray]], num_layers: int, scanned: bool) -> dict:
    """Our params tree from (spec, source array in the HF layout) pairs, each converted to our layout as it comes
    and dropped: one leaf per spec path, or per layer slice of a stacked [num_layers, ...] leaf when `scanned`
    (filled in place). Every reader's placement loop (Hugging Face families, metaseq)."""
    params: dict = {}
    stacked: dict[tuple[str, ...], np.ndarray] = {}
    for spec, array in converted:
        value = np.ascontiguousarray(spec.to_ours(array))
        del array
        if scanned and spec.layer is not None:
            rest = spec.path[2:]
            if rest not in stacked:
                stacked[rest] = np.empty((num_layers, *value.shape), np.float32)
            stacked[rest][spec.layer] = value
        else:
            set_leaf(params, spec.path, value)
    for rest, value in stacked.items():
        set_leaf(params, ("decoder", "layers", *rest), value)
    return params


def read_params(files: CheckpointFiles, wanted: dict[str, TensorSpec], tied_head_key: str | None,
                num_layers: int, scanned: bool) -> tuple[dict, np.ndarray | None]:
    """The tensors `wanted` (stored key -> spec) read one at a time into a params tree (`params_tree`); the tied
    LM head, when stored, is returned beside the tree for the caller to compare with the embedding."""
    lm_head = []

    def converted():
        for raw_key, array in files.iter_tensors(set(wanted) | ({tied_head_key} if tied_head_key else set())):
            if raw_key == tied_head_key:
                lm_head.append(array)
            else:
                yield wanted[raw_key], array
            del array  # the source goes before the next one is read

    params = params_tree(converted(), num_layers, scanned)
    return params, (lm_head[0] if lm_head else None)


@dataclasses.dataclass(frozen=True)
class HFFamily:
    """What the reader loop needs to know of one family's Hugging Face checkpoints.

    `spec_key` maps a stored key to its `TensorSpec.hf_key` (None: a buffer to ignore); `may_tie(config)` says
    whether a stored `lm_head.weight` is the tied embedding (compared with it, not loaded); the notes end the
    problem lines of an unexpected tensor and of a tied head that differs from the embedding."""

    kind: str  # in messages: "cannot convert this {kind} checkpoint"
    config_from_hf: Callable[[dict, str], Any]
    tensor_specs: Callable[[Any], list[TensorSpec]]
    spec_key: Callable[[str], str | None]
    may_tie: Callable[[Any], bool]
    unexpected_note: str
    untied_head_problem: str


TIED_HEAD = "lm_head.weight"


def load_hf_directory(directory: str | os.PathLike, family: HFFamily, *, scanned: bool) -> tuple[Any, dict]:
    """(config, float32 numpy params) of a Hugging Face directory of `family`, unrolled (`decoder/layers_{i}`) or
    stacked under `decoder/layers` when `scanned` (filled in place, no second copy). Raises `CheckpointError`
    listing every missing, unexpected or mis-shaped tensor, or the config's problems."""
    directory = pathlib.Path(directory)
    config_path = directory / HF_CONFIG
    if not config_path.is_file():
        raise CheckpointError(directory, [f"{HF_CONFIG} is missing"], kind=family.kind)
    config = family.config_from_hf(json.loads(config_path.read_text()), str(config_path))
    files = CheckpointFiles(directory)
    stored = {}
    for raw_key, shape in files.shapes().items():
        key = family.spec_key(raw_key)
        if key is not None:
            stored[key] = (raw_key, shape)
    specs = {s.hf_key: s for s in family.tensor_specs(config)}
    tied_head = TIED_HEAD if family.may_tie(config) and TIED_HEAD in stored else None
    problems = [f"missing tensor {k} (expected shape {list(s.hf_shape)})" for k, s in specs.items() if k not in stored]
    for key, (_, shape) in stored.items():
        expected = specs[key].hf_shape if key in specs else (
            (config.vocab_size, config.embed_dim) if key == tied_head else None)
        if expected is None:
            problems.append(f"unexpected tensor {key} {list(shape)} ({family.unexpected_note})")
        elif shape != expected:
            problems.append(f"tensor {key} has shape {list(shape)}, expected {list(expected)} for the config in "
                            f"{HF_CONFIG}")
    if problems:
        raise CheckpointError(directory, problems, kind=family.kind)
    params, lm_head = read_params(files, {stored[k][0]: specs[k] for k in specs},
                                  stored[tied_head][0] if tied_head else None, config.num_layers, scanned)
    if lm_head is not None and not np.array_equal(lm_head, params["decoder"]["embed_tokens"]["embedding"]):
        raise CheckpointError(directory, [family.untied_head_problem], kind=family.kind)
    return config, params


def _get(tree: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        tree = tree[name]
    return tree


def _as_unboxed(params: Any) -> Any:
    """Strip flax `nn.Partitioned` boxes if present (without importing flax when not needed)."""
    try:
        import flax.linen as nn

        return nn.unbox(params)
    except ImportError:  # pragma: no cover - flax is a hard dependency of the project
        return params


def parse_size(size: int | str | None) -> int | None:
    if size is None or isinstance(size, int):
        return size
    units = {"KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}
    s = size.strip().upper()
    for unit, scale in sorted(units.items(), key=lambda kv: -len(kv[0])):
        if s.endswith(unit):
            return int(float(s[: -len(unit)]) * scale)
    return int(s)


def write_hf_checkpoint(directory: str | os.PathLike, hf_config: dict[str, Any], specs: list[TensorSpec],
                        params: Any, *, max_shard_size: int | str | None = None,
                        key_prefix: str = "", kind: str = "OPT") -> pathlib.Path:
    """Write `params` (unrolled or scanned, numpy or jax, boxed or not) as HF tensors `key_prefix + spec.hf_key`
    (float32 safetensors, sharded above `max_shard_size` or 5 GB) plus `config.json` = `hf_config`.

    Shared by every model family's `save_hf_*`; checks every spec's parameter first and lists all problems.
    """
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    params = _as_unboxed(params)
    scanned = "layers" in params.get("decoder", {})
    limit = parse_size(max_shard_size)
    if limit is None and 4 * sum(int(np.prod(s.hf_shape)) for s in specs) > DEFAULT_MAX_SHARD_BYTES:
        limit = DEFAULT_MAX_SHARD_BYTES  # one file would mean a second full copy in memory
    _check_params(directory, params, specs, scanned, kind)

    def hf_tensor(spec: TensorSpec) -> np.ndarray:
        leaf = _leaf(params, spec, scanned)
        leaf = leaf[spec.layer] if scanned and spec.layer is not None else leaf
        return np.ascontiguousarray(spec.to_hf(np.asarray(leaf, dtype=np.float32)))

    shards, total = _write_shards(directory, specs, hf_tensor, key_prefix, limit)
    for stale in (SAFETENSORS_INDEX, TORCH_BIN, TORCH_BIN_INDEX) + (() if limit is None else (SAFETENSORS,)):
        (directory / stale).unlink(missing_ok=True)
    if limit is not None:
        weight_map = {}
        for k, (tmp, keys, _) in enumerate(shards):
            final = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
            os.replace(directory / tmp, directory / final)
            weight_map.update({key: final for key in keys})
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (directory / SAFETENSORS_INDEX).write_text(json.dumps(index, indent=2, sort_keys=True))
    (directory / HF_CONFIG).write_text(json.dumps(hf_config, indent=2, sort_keys=True))
    return directory


def _leaf(params: Any, spec: TensorSpec, scanned: bool) -> Any:
    """The leaf holding `spec`'s parameter: its own, or the stacked [num_layers, ...] one when `scanned`."""
    if scanned and spec.layer is not None:
        return _get(params, ("decoder", "layers", *spec.path[2:]))
    return _get(params, spec.path)


def _check_params(directory: pathlib.Path, params: Any, specs: list[TensorSpec], scanned: bool, kind: str) -> None:
    """Every spec's parameter exists with the shape its HF tensor converts to; all problems listed at once."""
    problems = []
    for spec in specs:
        try:
            leaf = _leaf(params, spec, scanned)
        except (KeyError, TypeError):
            problems.append(f"missing parameter {'/'.join(spec.path)}")
            continue
        expected = spec.to_ours(np.empty(spec.hf_shape, np.float32)).shape
        shape = tuple(leaf.shape[1:]) if scanned and spec.layer is not None else tuple(leaf.shape)
        if shape != expected:
            problems.append(f"parameter {'/'.join(spec.path)} has shape {list(shape)}, expected {list(expected)}")
    if problems:
        raise CheckpointError(directory, problems, kind=kind)


def _write_shards(directory: pathlib.Path, specs: list[TensorSpec], hf_tensor: Callable[[TensorSpec], np.ndarray],
                  key_prefix: str, limit: int | None) -> tuple[list[tuple[str, list[str], int]], int]:
    """Convert and write the tensors in spec order, a shard as soon as it is full (one `model.safetensors` when
    `limit` is None, else temporary shard files). Returns ([(temp filename, keys, bytes)], total bytes)."""
    from safetensors.numpy import save_file

    shards: list[tuple[str, list[str], int]] = []  # (temp filename, keys, bytes)
    current: dict[str, np.ndarray] = {}
    current_bytes = 0
    total = 0

    def flush():
        nonlocal current, current_bytes
        if not current:
            return
        name = SAFETENSORS if limit is None else f"shard-{len(shards):05d}.tmp.safetensors"
        save_file(current, str(directory / name), metadata={"format": "pt"})
        shards.append((name, list(current), current_bytes))
        current, current_bytes = {}, 0

    for spec in specs:
        tensor = hf_tensor(spec)
        if limit is not None and current and current_bytes + tensor.nbytes > limit:
            flush()
        current[key_prefix + spec.hf_key] = tensor
        current_bytes += tensor.nbytes
        total += tensor.nbytes
    flush()

    return shards, total
