"""Hugging Face OPT checkpoints <-> optiml_jax parameters, streamed one tensor at a time.

`load_hf_opt(directory)` reads a directory as `transformers` writes it (`config.json` plus
`model.safetensors`, `pytorch_model.bin`, or their sharded forms with a `*.index.json`) and returns
`(OPTConfig, params)` with params as float32 numpy arrays in the unrolled layout (`decoder/layers_{i}`),
or stacked (`decoder/layers`) with `scanned=True`. `save_hf_opt(config, params, directory)` writes a
directory that `transformers.OPTForCausalLM.from_pretrained` loads.

Why streaming: a 175B model is 700 GB in float32. Loading reads each source tensor (safetensors via
`safe_open`, .bin via `torch.load(mmap=True)`), converts it and drops it, so only the output copy lives
in memory; saving converts each tensor as a shard is filled and writes the shard as soon as it is full.

Name mapping (HF keys may carry a `model.` prefix, as `OPTForCausalLM` saves them, or not, as the
original `facebook/opt-*` checkpoints do; `lm_head.weight` is the tied token embedding and is
dropped after checking it equals `embed_tokens`):

| HF (`[model.]decoder.` ...)              | optiml_jax (`decoder/` ...)                  | transform |
|------------------------------------------|----------------------------------------------|-----------|
| `embed_tokens.weight` [V, E]             | `embed_tokens/embedding` [V, E]              | copy |
| `embed_positions.weight` [P+2, H]        | `embed_positions/embedding`                  | copy |
| `project_in.weight` [H, E]               | `project_in/kernel` [E, H]                   | transpose |
| `project_out.weight` [E, H]              | `project_out/kernel` [H, E]                  | transpose |
| `final_layer_norm.{weight,bias}`         | `final_layer_norm/ln/{scale,bias}`           | copy |
| `layers.i.self_attn.{q,k,v}_proj.weight` | `layers_i/self_attn/{q,k,v}_proj/kernel` [H, heads, head_dim] | transpose + reshape |
| `layers.i.self_attn.{q,k,v}_proj.bias`   | `.../bias` [heads, head_dim]                 | reshape |
| `layers.i.self_attn.out_proj.weight`     | `layers_i/self_attn/out_proj/kernel` [heads, head_dim, H] | transpose + reshape |
| `layers.i.fc1.weight` / `fc2.weight`     | `layers_i/fc1/kernel` [H, F] / `fc2/kernel` [F, H] | transpose |
| `layers.i.{self_attn_layer_norm,final_layer_norm}.{weight,bias}` | `layers_i/.../ln/{scale,bias}` | copy |

Every transform is a transpose/reshape, so HF -> optiml_jax -> HF is bit-identical.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import pickle
from typing import Any, Callable, Iterator

import numpy as np

from optiml_jax.models.config import POSITION_OFFSET, OPTConfig

HF_CONFIG = "config.json"
SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
TORCH_BIN = "pytorch_model.bin"
TORCH_BIN_INDEX = "pytorch_model.bin.index.json"
DEFAULT_MAX_SHARD_BYTES = 5 * 10**9  # transformers' own default shard size
_HF_LAYER_NORM_EPS = 1e-5  # torch.nn.LayerNorm default; HF's OPTConfig has no field for it


class CheckpointError(ValueError):
    """A checkpoint directory or config that cannot be converted; the message lists every problem."""

    def __init__(self, where: str | os.PathLike, problems: list[str], kind: str = "OPT"):
        self.problems = list(problems)
        super().__init__(f"{where}: cannot convert this {kind} checkpoint:\n  - " + "\n  - ".join(self.problems))


# ----------------------------------------------------------------------------------------------- config


def config_from_hf(hf: dict[str, Any], where: str = "config.json") -> OPTConfig:
    """Our OPTConfig from a Hugging Face OPT `config.json` dict (HF defaults for absent optional fields)."""
    problems = []
    if hf.get("model_type") != "opt":
        problems.append(f"model_type is {hf.get('model_type')!r}, expected 'opt'")
    required = ("hidden_size", "num_hidden_layers", "num_attention_heads", "ffn_dim", "vocab_size")
    problems += [f"missing required field {name!r}" for name in required if name not in hf]
    activation = hf.get("activation_function", "relu")
    if activation != "relu":
        problems.append(f"activation_function is {activation!r}; only relu OPT models are supported")
    if hf.get("do_layer_norm_before", True) and hf.get("_remove_final_layer_norm", False):
        problems.append("_remove_final_layer_norm=True with do_layer_norm_before=True is not supported")
    if problems:
        raise CheckpointError(where, problems)
    hidden = hf["hidden_size"]
    proj = hf.get("word_embed_proj_dim") or hidden
    try:
        return OPTConfig(
            hidden_size=hidden,
            num_layers=hf["num_hidden_layers"],
            num_heads=hf["num_attention_heads"],
            ffn_dim=hf["ffn_dim"],
            vocab_size=hf["vocab_size"],
            max_position_embeddings=hf.get("max_position_embeddings", 2048),
            word_embed_proj_dim=None if proj == hidden else proj,
            do_layer_norm_before=hf.get("do_layer_norm_before", True),
            enable_bias=hf.get("enable_bias", True),
            layer_norm_elementwise_affine=hf.get("layer_norm_elementwise_affine", True),
            dropout_rate=hf.get("dropout", 0.1),
            attention_dropout_rate=hf.get("attention_dropout", 0.0),
            init_std=hf.get("init_std", 0.02),
            # a config.json without them gets OPTConfig's defaults (OPT's ids, from optiml_jax.vocabularies)
            pad_token_id=hf.get("pad_token_id", OPTConfig.pad_token_id),
            bos_token_id=hf.get("bos_token_id", OPTConfig.bos_token_id),
            eos_token_id=hf.get("eos_token_id", OPTConfig.eos_token_id),
        )
    except ValueError as e:
        raise CheckpointError(where, [str(e)]) from e


def config_to_hf(config: OPTConfig) -> dict[str, Any]:
    """The `config.json` dict `transformers.OPTConfig` reads for this model."""
    if config.layer_norm_eps != _HF_LAYER_NORM_EPS:
        raise CheckpointError("OPTConfig", [f"layer_norm_eps={config.layer_norm_eps}: Hugging Face OPT fixes 1e-5"])
    return {
        "architectures": ["OPTForCausalLM"],
        "model_type": "opt",
        "activation_function": "relu",
        "hidden_size": config.hidden_size,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "ffn_dim": config.ffn_dim,
        "vocab_size": config.vocab_size,
        "max_position_embeddings": config.max_position_embeddings,
        "word_embed_proj_dim": config.embed_dim,
        "do_layer_norm_before": config.do_layer_norm_before,
        "_remove_final_layer_norm": False,
        "enable_bias": config.enable_bias,
        "layer_norm_elementwise_affine": config.layer_norm_elementwise_affine,
        "dropout": config.dropout_rate,
        "attention_dropout": config.attention_dropout_rate,
        "layerdrop": 0.0,
        "init_std": config.init_std,
        "pad_token_id": config.pad_token_id,
        "bos_token_id": config.bos_token_id,
        "eos_token_id": config.eos_token_id,
        "tie_word_embeddings": True,
        "use_cache": True,
        "torch_dtype": "float32",
    }


# ------------------------------------------------------------------------------------ tensor mapping


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """One HF tensor and where it lives in our tree."""

    hf_key: str  # without the optional "model." prefix, e.g. "decoder.layers.0.fc1.weight"
    path: tuple[str, ...]  # unrolled layout, e.g. ("decoder", "layers_0", "fc1", "kernel")
    hf_shape: tuple[int, ...]
    to_ours: Callable[[np.ndarray], np.ndarray]
    to_hf: Callable[[np.ndarray], np.ndarray]
    layer: int | None = None


def _copy(x):
    return x


def _transpose(x):
    return x.T


def tensor_specs(config: OPTConfig) -> list[TensorSpec]:
    """Every tensor of an HF OPT checkpoint for `config`, in the order HF's state_dict lists them."""
    h, e, f, v = config.hidden_size, config.embed_dim, config.ffn_dim, config.vocab_size
    nh, hd = config.num_heads, config.head_dim
    specs = [
        TensorSpec("decoder.embed_tokens.weight", ("decoder", "embed_tokens", "embedding"), (v, e), _copy, _copy),
        TensorSpec("decoder.embed_positions.weight", ("decoder", "embed_positions", "embedding"),
                   (config.max_position_embeddings + POSITION_OFFSET, h), _copy, _copy),
    ]

    def layer_norm(hf_prefix, path, layer=None):
        if not config.layer_norm_elementwise_affine:
            return []
        return [TensorSpec(f"{hf_prefix}.weight", (*path, "ln", "scale"), (h,), _copy, _copy, layer),
                TensorSpec(f"{hf_prefix}.bias", (*path, "ln", "bias"), (h,), _copy, _copy, layer)]

    if config.do_layer_norm_before:
        specs += layer_norm("decoder.final_layer_norm", ("decoder", "final_layer_norm"))
    if config.has_projections:
        specs += [
            TensorSpec("decoder.project_out.weight", ("decoder", "project_out", "kernel"), (e, h), _transpose, _transpose),
            TensorSpec("decoder.project_in.weight", ("decoder", "project_in", "kernel"), (h, e), _transpose, _transpose),
        ]
    qkv_to_ours = lambda w: w.T.reshape(h, nh, hd)  # noqa: E731
    qkv_to_hf = lambda k: k.reshape(h, h).T  # noqa: E731
    out_to_ours = lambda w: w.T.reshape(nh, hd, h)  # noqa: E731
    out_to_hf = lambda k: k.reshape(h, h).T  # noqa: E731
    head_bias_to_ours = lambda b: b.reshape(nh, hd)  # noqa: E731
    head_bias_to_hf = lambda b: b.reshape(h)  # noqa: E731
    for i in range(config.num_layers):
        hf, ours = f"decoder.layers.{i}", ("decoder", f"layers_{i}")
        for name in ("k_proj", "v_proj", "q_proj"):
            specs.append(TensorSpec(f"{hf}.self_attn.{name}.weight", (*ours, "self_attn", name, "kernel"), (h, h),
                                    qkv_to_ours, qkv_to_hf, i))
            if config.enable_bias:
                specs.append(TensorSpec(f"{hf}.self_attn.{name}.bias", (*ours, "self_attn", name, "bias"), (h,),
                                        head_bias_to_ours, head_bias_to_hf, i))
        specs.append(TensorSpec(f"{hf}.self_attn.out_proj.weight", (*ours, "self_attn", "out_proj", "kernel"), (h, h),
                                out_to_ours, out_to_hf, i))
        if config.enable_bias:
            specs.append(TensorSpec(f"{hf}.self_attn.out_proj.bias", (*ours, "self_attn", "out_proj", "bias"), (h,),
                                    _copy, _copy, i))
        specs += layer_norm(f"{hf}.self_attn_layer_norm", (*ours, "self_attn_layer_norm"), i)
        for name, shape in (("fc1", (f, h)), ("fc2", (h, f))):
            specs.append(TensorSpec(f"{hf}.{name}.weight", (*ours, name, "kernel"), shape, _transpose, _transpose, i))
            if config.enable_bias:
                specs.append(TensorSpec(f"{hf}.{name}.bias", (*ours, name, "bias"), (shape[0],), _copy, _copy, i))
        specs += layer_norm(f"{hf}.final_layer_norm", (*ours, "final_layer_norm"), i)
    return specs


# ---------------------------------------------------------------------------------------- reading


class _CheckpointFiles:
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


def _set(tree: dict, path: tuple[str, ...], value: Any) -> None:
    for name in path[:-1]:
        tree = tree.setdefault(name, {})
    tree[path[-1]] = value


def load_hf_opt(directory: str | os.PathLike, *, scanned: bool = False) -> tuple[OPTConfig, dict]:
    """Read a Hugging Face OPT directory -> (OPTConfig, float32 numpy params).

    Unrolled layout (`decoder/layers_{i}`) by default; `scanned=True` returns `decoder/layers` with a
    leading layer axis, filled in place (no second copy). Raises `CheckpointError` listing every
    missing, unexpected or mis-shaped tensor, or a config that is not OPT.
    """
    directory = pathlib.Path(directory)
    config_path = directory / HF_CONFIG
    if not config_path.is_file():
        raise CheckpointError(directory, [f"{HF_CONFIG} is missing"])
    config = config_from_hf(json.loads(config_path.read_text()), str(config_path))
    files = _CheckpointFiles(directory)
    stored = {_strip(k): (k, shape) for k, shape in files.shapes().items()}

    specs = {s.hf_key: s for s in tensor_specs(config)}
    problems = [f"missing tensor {k} (expected shape {list(s.hf_shape)})" for k, s in specs.items() if k not in stored]
    for key, (_, shape) in stored.items():
        if key in specs and shape != specs[key].hf_shape:
            problems.append(f"tensor {key} has shape {list(shape)}, expected {list(specs[key].hf_shape)} "
                            f"for the config in {HF_CONFIG}")
        elif key not in specs and key != "lm_head.weight":
            problems.append(f"unexpected tensor {key} {list(shape)} (not part of an OPT model with this config)")
    if "lm_head.weight" in stored and stored["lm_head.weight"][1] != (config.vocab_size, config.embed_dim):
        problems.append(f"lm_head.weight has shape {list(stored['lm_head.weight'][1])}, expected "
                        f"{[config.vocab_size, config.embed_dim]}")
    if problems:
        raise CheckpointError(directory, problems)

    lm_head_key = stored.get("lm_head.weight", (None,))[0]
    params, lm_head = read_params(files, {stored[k][0]: specs[k] for k in specs}, lm_head_key, config.num_layers,
                                  scanned)
    if lm_head is not None and not np.array_equal(lm_head, params["decoder"]["embed_tokens"]["embedding"]):
        raise CheckpointError(directory, ["lm_head.weight differs from decoder.embed_tokens.weight: OPT ties them, "
                                          "and untied heads are not supported"])
    return config, params


def read_params(files: "_CheckpointFiles", wanted: dict[str, TensorSpec], tied_head_key: str | None,
                num_layers: int, scanned: bool) -> tuple[dict, np.ndarray | None]:
    """Every family's reader loop: the tensors `wanted` (stored key -> spec) read one at a time, converted to our
    layout and placed in a params tree (per layer, or stacked [num_layers, ...] when `scanned`); the tied LM head,
    when stored, is returned beside the tree for the caller to compare with the embedding."""
    params: dict = {}
    stacked: dict[tuple[str, ...], np.ndarray] = {}
    lm_head = None
    for raw_key, array in files.iter_tensors(set(wanted) | ({tied_head_key} if tied_head_key else set())):
        if raw_key == tied_head_key:
            lm_head = array
            continue
        spec = wanted[raw_key]
        value = np.ascontiguousarray(spec.to_ours(array))
        if scanned and spec.layer is not None:
            rest = spec.path[2:]
            if rest not in stacked:
                stacked[rest] = np.empty((num_layers, *value.shape), np.float32)
            stacked[rest][spec.layer] = value
        else:
            _set(params, spec.path, value)
        del array
    for rest, value in stacked.items():
        _set(params, ("decoder", "layers", *rest), value)
    return params, lm_head


# ---------------------------------------------------------------------------------------- writing


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


def _parse_size(size: int | str | None) -> int | None:
    if size is None or isinstance(size, int):
        return size
    units = {"KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}
    s = size.strip().upper()
    for unit, scale in sorted(units.items(), key=lambda kv: -len(kv[0])):
        if s.endswith(unit):
            return int(float(s[: -len(unit)]) * scale)
    return int(s)


def save_hf_opt(config: OPTConfig, params: Any, directory: str | os.PathLike, *,
                max_shard_size: int | str | None = None) -> pathlib.Path:
    """Write `params` (unrolled or scanned, numpy or jax, boxed or not) as an HF OPT directory.

    float32 safetensors; models over 5 GB are always sharded (a single file is built in memory). With `max_shard_size` (bytes, or '2GB'-style) tensors go into
    `model-0000k-of-0000n.safetensors` shards plus `model.safetensors.index.json`, each shard written
    as soon as it is full. Returns the directory.
    """
    return write_hf_checkpoint(directory, config_to_hf(config), tensor_specs(config), params,
                               max_shard_size=max_shard_size, key_prefix="model.")


def write_hf_checkpoint(directory: str | os.PathLike, hf_config: dict[str, Any], specs: list[TensorSpec],
                        params: Any, *, max_shard_size: int | str | None = None,
                        key_prefix: str = "", kind: str = "OPT") -> pathlib.Path:
    """Write `params` (unrolled or scanned, numpy or jax, boxed or not) as HF tensors `key_prefix + spec.hf_key`
    (float32 safetensors, sharded above `max_shard_size` or 5 GB) plus `config.json` = `hf_config`.

    Shared by every model family's `save_hf_*`; checks every spec's parameter first and lists all problems.
    """
    from safetensors.numpy import save_file

    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    params = _as_unboxed(params)
    scanned = "layers" in params.get("decoder", {})
    limit = _parse_size(max_shard_size)
    if limit is None and 4 * sum(int(np.prod(s.hf_shape)) for s in specs) > DEFAULT_MAX_SHARD_BYTES:
        limit = DEFAULT_MAX_SHARD_BYTES  # one file would mean a second full copy in memory
    problems = []
    for spec in specs:
        try:
            if scanned and spec.layer is not None:
                leaf = _get(params, ("decoder", "layers", *spec.path[2:]))
            else:
                leaf = _get(params, spec.path)
        except (KeyError, TypeError):
            problems.append(f"missing parameter {'/'.join(spec.path)}")
            continue
        expected = spec.to_ours(np.empty(spec.hf_shape, np.float32)).shape
        shape = tuple(leaf.shape[1:]) if scanned and spec.layer is not None else tuple(leaf.shape)
        if shape != expected:
            problems.append(f"parameter {'/'.join(spec.path)} has shape {list(shape)}, expected {list(expected)}")
    if problems:
        raise CheckpointError(directory, problems, kind=kind)

    def hf_tensor(spec: TensorSpec) -> np.ndarray:
        if scanned and spec.layer is not None:
            leaf = _get(params, ("decoder", "layers", *spec.path[2:]))[spec.layer]
        else:
            leaf = _get(params, spec.path)
        return np.ascontiguousarray(spec.to_hf(np.asarray(leaf, dtype=np.float32)))

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
