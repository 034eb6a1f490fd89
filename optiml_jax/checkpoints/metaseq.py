"""metaseq checkpoints (how OPT and OPT-IML were trained and released) -> optiml_jax parameters, streamed.

Accepted: one consolidated `.pt` file, a directory holding one, or a model-parallel set
`<prefix>-model_part-{0..N-1}.pt` (the file of any part, or its directory). Each file is a `torch.save`d dict with
`model` (the state dict) and usually `cfg` / `args`, read safely (`metaseq_pickle`: an allow-list, no code runs).

Merging model-parallel parts follows metaseq's own `reshard_megatron_parts`
(metaseq/distributed/stitch_fsdp_ckpt.py), which Hugging Face's OPT conversion script also assumes:
* column-parallel tensors concatenate on dim 0: `embed_tokens`, `fc1` (weight and bias), `k/v/q_proj`;
* the fused `self_attn.qkv_proj` is stored per part as **K, V, Q** (despite its name): each part's tensor splits
  in three, then the Ks, Vs and Qs concatenate across parts (a consolidated file is the one-part case);
* row-parallel weights concatenate on dim 1: `fc2.weight`, `out_proj.weight`; their biases are replicated;
* replicated: positions, every layer norm, `project_in_dim` / `project_out_dim` (checked equal across parts:
  parts of different checkpoints are refused);
* keys: `decoder.` prefix, `decoder.version` dropped, `decoder.output_projection.weight` dropped once checked equal
  to the token embedding (OPT ties them), `decoder.layer_norm` -> the final layer norm (absent for post-LN models,
  e.g. 350m), `project_in_dim` / `project_out_dim` -> `project_in` / `project_out`; positions are learned with
  OPT's offset of 2 (the same table Hugging Face has).

The architecture comes from the shapes (vocab, widths, layers, positions, biases, pre/post-LN) and `cfg`'s model
section (`decoder_attention_heads`; every field it has is checked against the shapes), else the OPT preset of that
width and depth. FSDP flat-parameter shards (`*-shard<k>.pt`, `flat_param_*`) must be consolidated with metaseq's
`metaseq/scripts/consolidate_fsdp_shards.py` first.

Streaming: every part is memory-mapped (`torch.load(mmap=True)`), output tensors are built one at a time
(`hf_tensor`) from each part's slice, copied in 4 MB row blocks whose pages are returned to the OS
(`madvise(MADV_DONTNEED)`) once copied, so what is resident is the merged tensor plus one block, whatever the
number and size of parts (perf/RESULTS.md measures it); `load_metaseq(target=...)` puts each on its devices.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
from typing import Any, Iterator

import numpy as np

from optiml_jax.checkpoints.hf import tensor_specs
from optiml_jax.checkpoints.hf_tensors import CheckpointError, params_tree, set_leaf
from optiml_jax.checkpoints.metaseq_pickle import plain, safe_torch_load
from optiml_jax.models.config import POSITION_OFFSET, PRESETS, OPTConfig

PART_RE = re.compile(r"^(?P<prefix>.+)-model_part-(?P<part>\d+)(?P<shard>-shard\d+)?\.pt$")
FSDP_SHARD_RE = re.compile(r"-shard\d+\.pt$")
CONSOLIDATE_HINT = "consolidate FSDP shards first with metaseq's metaseq/scripts/consolidate_fsdp_shards.py"


class MetaseqCheckpointError(CheckpointError):
    """A metaseq checkpoint that cannot be read or merged; one line naming the file (and the first problems)."""

    def __init__(self, where: str | os.PathLike, problems: list[str] | str):
        problems = [problems] if isinstance(problems, str) else list(problems)
        self.problems = problems
        more = f" (and {len(problems) - 1} more: {'; '.join(problems[1:4])}{'; ...' if len(problems) > 4 else ''})"
        ValueError.__init__(self, f"{where}: {problems[0]}" + (more if len(problems) > 1 else ""))


# ------------------------------------------------------------------------------------------- files


def find_metaseq_files(path: str | os.PathLike) -> list[pathlib.Path]:
    """The files of one metaseq checkpoint in part order: [consolidated] or [part 0, ..., part N-1]."""
    p = pathlib.Path(path)
    if p.is_file():
        m = PART_RE.match(p.name)
        if FSDP_SHARD_RE.search(p.name):
            raise MetaseqCheckpointError(p, f"an FSDP shard, not a whole checkpoint: {CONSOLIDATE_HINT}")
        return _part_set(p.parent, m.group("prefix")) if m else [p]
    if not p.is_dir():
        raise FileNotFoundError(f"metaseq checkpoint {p} does not exist")
    pts = sorted(x for x in p.iterdir() if x.is_file() and x.suffix == ".pt")
    if not pts:
        raise MetaseqCheckpointError(p, "no .pt files: not a metaseq checkpoint directory")
    if any(FSDP_SHARD_RE.search(x.name) for x in pts):
        raise MetaseqCheckpointError(p, f"holds FSDP shards ({next(x.name for x in pts if FSDP_SHARD_RE.search(x.name))}, "
                                        f"...): {CONSOLIDATE_HINT}")
    sets = sorted({m.group("prefix") for x in pts if (m := PART_RE.match(x.name))})
    singles = [x.name for x in pts if not PART_RE.match(x.name)]
    names = [f"{s}-model_part-*.pt" for s in sets] + singles
    if len(names) > 1:
        raise MetaseqCheckpointError(p, f"holds {len(names)} metaseq checkpoints ({', '.join(names[:4])}): pass the "
                                        "file of the one you mean")
    return _part_set(p, sets[0]) if sets else [p / singles[0]]


def _part_set(directory: pathlib.Path, prefix: str) -> list[pathlib.Path]:
    found = {}
    for x in directory.iterdir():
        m = PART_RE.match(x.name)
        if m and m.group("prefix") == prefix and not m.group("shard"):
            found[int(m.group("part"))] = x
    n = max(found) + 1
    missing = [i for i in range(n) if i not in found]
    if missing:
        raise MetaseqCheckpointError(directory, f"part {missing[0]} of the model-parallel set {prefix}-model_part-"
                                                f"{{0..{n - 1}}}.pt is missing ({len(found)} of {n} parts present)")
    return [found[i] for i in range(n)]


def looks_like_metaseq(path: str | os.PathLike) -> bool:
    """A `.pt` file, or a directory with `.pt` files and no config.json (names only; nothing is read)."""
    p = pathlib.Path(path)
    if p.is_file():
        return p.suffix == ".pt"
    return p.is_dir() and not (p / "config.json").exists() and any(x.suffix == ".pt" for x in p.iterdir())


# ------------------------------------------------------------------------------------------- merging


@dataclasses.dataclass(frozen=True)
class _Recipe:
    """How one Hugging Face-named tensor is built from the parts."""

    key: str  # metaseq key in every part
    mode: str  # "cat0" | "cat1" | "replicated" | "fused" (a third of qkv_proj per part, concatenated on dim 0)
    third: int = 0  # fused: 0 = K, 1 = V, 2 = Q


_FUSED_INDEX = {"k_proj": 0, "v_proj": 1, "q_proj": 2}


def _recipe(hf_key: str, fused: bool) -> _Recipe:
    renamed = {"decoder.final_layer_norm.weight": "decoder.layer_norm.weight",
               "decoder.final_layer_norm.bias": "decoder.layer_norm.bias",
               "decoder.project_in.weight": "decoder.project_in_dim.weight",
               "decoder.project_out.weight": "decoder.project_out_dim.weight"}
    if hf_key in renamed:
        return _Recipe(renamed[hf_key], "replicated")
    if hf_key == "decoder.embed_tokens.weight":
        return _Recipe(hf_key, "cat0")
    m = re.match(r"(decoder\.layers\.\d+\.self_attn)\.([kvq]_proj)\.(weight|bias)$", hf_key)
    if m:
        if fused:
            return _Recipe(f"{m.group(1)}.qkv_proj.{m.group(3)}", "fused", _FUSED_INDEX[m.group(2)])
        return _Recipe(hf_key, "cat0")
    if re.search(r"\.fc1\.(weight|bias)$", hf_key):
        return _Recipe(hf_key, "cat0")
    if re.search(r"\.(fc2|self_attn\.out_proj)\.weight$", hf_key):
        return _Recipe(hf_key, "cat1")
    return _Recipe(hf_key, "replicated")  # positions, layer norms, row-parallel biases


def _part_shape(recipe: _Recipe, hf_shape: tuple[int, ...], n: int) -> tuple[int, ...]:
    if recipe.mode == "replicated":
        return hf_shape
    if recipe.mode == "cat1":
        return (hf_shape[0], hf_shape[1] // n)
    rows = hf_shape[0] // n * (3 if recipe.mode == "fused" else 1)
    return (rows, *hf_shape[1:])


class _PageRelease:
    """Give a memory-mapped tensor's pages back to the OS once it has been copied (Linux madvise; else a no-op).

    The mapping is private and never written, so dropped pages are re-read from the file if touched again."""

    def __init__(self):
        self.libc = None
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
            self.libc, self.page = libc, os.sysconf("SC_PAGE_SIZE")
        except (OSError, AttributeError, ValueError):
            pass

    def __call__(self, tensor) -> None:
        """Drop the pages under `tensor` (a whole mapped tensor or a contiguous view of one)."""
        if self.libc is None:
            return
        start, size = tensor.data_ptr(), tensor.numel() * tensor.element_size()
        lo, hi = start // self.page * self.page, -(-(start + size) // self.page) * self.page
        if size:
            self.libc.madvise(lo, hi - lo, 4)  # MADV_DONTNEED


COPY_CHUNK_BYTES = 4 << 20  # a part's slice is copied (and its pages dropped) in row blocks of about this size


def _row_blocks(source) -> Iterator[tuple[int, int]]:
    """Row ranges of `source` (dim 0) of about COPY_CHUNK_BYTES each; a 1-D tensor is one block."""
    rows = source.shape[0]
    if source.dim() < 2:
        yield 0, rows
        return
    step = max(1, COPY_CHUNK_BYTES // max(1, source[0].numel() * source.element_size()))
    for r in range(0, rows, step):
        yield r, min(rows, r + step)


class MetaseqCheckpoint:
    """One metaseq checkpoint, its parts open (memory-mapped) but not read: `config`, then `iter_hf_tensors()`."""

    def __init__(self, path: str | os.PathLike, *, trust_pickle: bool = False):
        self.path = pathlib.Path(path)
        self.files = find_metaseq_files(self.path)
        self.n = len(self.files)
        self.states, self.mmapped = [], []
        for f in self.files:
            state, mapped = _load_file(f, trust_pickle)
            self.states.append(state)
            self.mmapped.append(mapped)
        self.models = [s["model"] for s in self.states]
        self.cfg = plain(self.states[0].get("cfg")) or {}
        self.model_cfg = _model_section(self.cfg, plain(self.states[0].get("args")))
        self._check_same_checkpoint()
        self.fused = any(k.endswith(".qkv_proj.weight") for k in self.models[0])
        self.config = self._infer_config()
        self.recipes = {s.hf_key: (_recipe(s.hf_key, self.fused), s.hf_shape) for s in tensor_specs(self.config)}
        self._check_shapes()
        self._release = _PageRelease()

    # ---- checks ----
    def _where(self, i: int) -> str:
        return str(self.files[i]) if self.n > 1 else str(self.files[0])

    def _check_same_checkpoint(self) -> None:
        def updates(state):
            history = plain(state.get("optimizer_history")) or [{}]
            return history[-1].get("num_updates") if isinstance(history[-1], dict) else None

        expected = _expected_parts(self.cfg, self.model_cfg)
        if self.n > 1 and expected is not None and expected != self.n:
            raise MetaseqCheckpointError(self.files[0], f"cfg says model_parallel_size={expected} but {self.n} "
                                                        f"parts were found ({self.files[0].name}, ...)")
        keys0 = set(self.models[0])
        for i in range(1, self.n):
            if _run_cfg(self.states[i]) != _run_cfg(self.states[0]):
                raise MetaseqCheckpointError(self.files[i], f"its cfg differs from part 0's ({self.files[0].name}): "
                                                            "parts of different checkpoints mixed")
            if updates(self.states[i]) != updates(self.states[0]):
                raise MetaseqCheckpointError(self.files[i], f"saved at update {updates(self.states[i])}, part 0 "
                                                            f"({self.files[0].name}) at {updates(self.states[0])}: "
                                                            "parts of different checkpoints mixed")
            if set(self.models[i]) != keys0:
                diff = sorted(set(self.models[i]) ^ keys0)
                raise MetaseqCheckpointError(self.files[i], f"its tensors differ from part 0's ({diff[:3]}): parts "
                                                            "of different checkpoints mixed")

    def _infer_config(self) -> OPTConfig:
        m, n, where = self.models[0], self.n, self._where(0)
        shape = lambda k: tuple(m[k].shape) if k in m else None  # noqa: E731
        for need in ("decoder.embed_tokens.weight", "decoder.embed_positions.weight", "decoder.layers.0.fc1.weight"):
            if shape(need) is None:
                raise MetaseqCheckpointError(where, f"no {need}: not a metaseq OPT checkpoint")
        flat = [k for k in m if "flat_param" in k]
        if flat:
            raise MetaseqCheckpointError(where, f"holds FSDP flat parameters ({flat[0]}): {CONSOLIDATE_HINT}")
        if "decoder.embed_positions._float_tensor" in m:
            raise MetaseqCheckpointError(where, "sinusoidal positions: OPT learns its positions")
        layers = {int(x.group(1)) for k in m if (x := re.match(r"decoder\.layers\.(\d+)\.", k))}
        num_layers = max(layers) + 1
        vocab, embed_dim = shape("decoder.embed_tokens.weight")
        ffn, hidden = shape("decoder.layers.0.fc1.weight")
        mc = self.model_cfg
        final_ln = "decoder.layer_norm.weight" in m or "decoder.layer_norm.bias" in m
        affine = "decoder.layers.0.self_attn_layer_norm.weight" in m
        fields = dict(hidden_size=hidden, num_layers=num_layers, ffn_dim=ffn * n, vocab_size=vocab * n,
                      max_position_embeddings=shape("decoder.embed_positions.weight")[0] - POSITION_OFFSET,
                      word_embed_proj_dim=None if embed_dim == hidden else embed_dim,
                      do_layer_norm_before=final_ln if affine else bool(mc.get("decoder_normalize_before", True)),
                      enable_bias="decoder.layers.0.fc1.bias" in m, layer_norm_elementwise_affine=affine)
        problems = []
        heads = mc.get("decoder_attention_heads")
        if heads is None:
            preset = [p for p in PRESETS.values() if p["hidden_size"] == hidden and p["num_layers"] == num_layers]
            if not preset:
                raise MetaseqCheckpointError(where, f"cannot tell the number of attention heads: no cfg/args "
                                                    f"decoder_attention_heads and no OPT size has hidden {hidden} "
                                                    f"with {num_layers} layers")
            heads = preset[0]["num_heads"]
        checks = {"decoder_embed_dim": hidden, "decoder_input_dim": embed_dim, "decoder_output_dim": embed_dim,
                  "decoder_ffn_embed_dim": fields["ffn_dim"], "decoder_layers": num_layers,
                  "decoder_normalize_before": fields["do_layer_norm_before"]}
        for name, value in checks.items():
            if mc.get(name) is not None and mc[name] != value:
                problems.append(f"cfg model.{name}={mc[name]!r} but the tensors say {value!r}")
        wanted = {"activation_fn": "relu", "decoder_learned_pos": True, "no_scale_embedding": True,
                  "share_decoder_input_output_embed": True}
        for name, value in wanted.items():
            if mc.get(name) is not None and mc[name] != value:
                problems.append(f"cfg model.{name}={mc[name]!r}: OPT has {value!r}, other models are not supported")
        if problems:
            raise MetaseqCheckpointError(where, problems)
        try:
            return OPTConfig(num_heads=int(heads), **fields)
        except ValueError as e:
            raise MetaseqCheckpointError(where, str(e)) from e

    def _check_shapes(self) -> None:
        m, problems = self.models[0], []
        expected_keys = set()
        for hf_key, (recipe, hf_shape) in self.recipes.items():
            expected_keys.add(recipe.key)
            want = _part_shape(recipe, hf_shape, self.n)
            if recipe.key not in m:
                problems.append(f"missing tensor {recipe.key} (expected shape {list(want)} per part)")
            elif tuple(m[recipe.key].shape) != want:
                per = " per part" if self.n > 1 else ""
                problems.append(f"tensor {recipe.key} has shape {list(m[recipe.key].shape)}, expected {list(want)}"
                                f"{per} for the inferred config ({self.config.hidden_size} hidden, "
                                f"{self.config.num_heads} heads, {self.n} part{'s' if self.n > 1 else ''})")
        emb = "decoder.output_projection.weight"
        if emb in m and tuple(m[emb].shape) != tuple(m["decoder.embed_tokens.weight"].shape):
            problems.append(f"{emb} has shape {list(m[emb].shape)}, not the embedding's: an untied head")
        unexpected = sorted(set(m) - expected_keys - {"decoder.version", emb})
        problems += [f"unexpected tensor {k} {list(getattr(m[k], 'shape', []))} (not part of an OPT model)"
                     for k in unexpected]
        if problems:
            raise MetaseqCheckpointError(self._where(0), problems)

    # ---- reading ----
    def iter_hf_tensors(self) -> Iterator[tuple[str, np.ndarray]]:
        """(Hugging Face key, float32 array) for every tensor, in `tensor_specs` order, one at a time."""
        for hf_key in self.recipes:
            yield hf_key, self.hf_tensor(hf_key)

    def hf_tensor(self, hf_key: str) -> np.ndarray:
        """One merged float32 tensor (Hugging Face layout), built from each part's slice; the slices' pages are
        handed back as they are copied, so what stays resident is this array alone. Any order, any number of
        times (the parts stay mapped)."""
        import torch

        recipe, hf_shape = self.recipes[hf_key]
        out = np.empty(hf_shape, np.float32)
        target = torch.from_numpy(out)
        if recipe.mode == "replicated":  # small (positions, layer norms, biases): whole tensors
            target.copy_(self.models[0][recipe.key])
            self._release_part(0, recipe.key)
            for i in range(1, self.n):
                other = self.models[i][recipe.key].float()
                if not torch.allclose(other, target, rtol=1e-3, atol=1e-3):
                    raise MetaseqCheckpointError(self.files[i], f"{recipe.key} differs from part 0's "
                                                                f"({self.files[0].name}) although metaseq "
                                                                "replicates it: parts of different checkpoints mixed")
                del other
                self._release_part(i, recipe.key)
        else:
            for i in range(self.n):
                source = self.models[i][recipe.key]
                if recipe.mode == "cat1":
                    w = hf_shape[1] // self.n
                    dest = target[:, i * w:(i + 1) * w]
                else:
                    rows = hf_shape[0] // self.n
                    if recipe.mode == "fused":
                        source = source[recipe.third * rows:(recipe.third + 1) * rows]
                    dest = target[i * rows:(i + 1) * rows]
                for lo, hi in _row_blocks(source):  # resident input: one block, not the part's slice
                    dest[lo:hi].copy_(source[lo:hi])
                    self._release_view(i, source[lo:hi])
        if hf_key == "decoder.embed_tokens.weight":
            self._check_tied(target)
        return out

    def _check_tied(self, embedding) -> None:
        import torch

        key, rows = "decoder.output_projection.weight", self.config.vocab_size // self.n
        scratch = None  # one float32 block, reused: per-block temporaries would fragment the heap
        for i in range(self.n):
            if key in self.models[i]:
                head = self.models[i][key]
                for lo, hi in _row_blocks(head):
                    if scratch is None:
                        scratch = torch.empty((hi - lo, *head.shape[1:]), dtype=torch.float32)
                    block = scratch[:hi - lo]
                    block.copy_(head[lo:hi])
                    if not torch.equal(block, embedding[i * rows + lo:i * rows + hi]):
                        raise MetaseqCheckpointError(self.files[i], f"{key} differs from decoder.embed_tokens."
                                                                    "weight: OPT ties them, and untied heads are "
                                                                    "not supported")
                    self._release_view(i, head[lo:hi])

    def _release_view(self, i: int, view) -> None:
        if self.mmapped[i] and view.is_contiguous():
            self._release(view)

    def _release_part(self, i: int, key: str) -> None:
        if self.mmapped[i]:
            self._release(self.models[i][key])


def _load_file(f: pathlib.Path, trust_pickle: bool) -> tuple[dict, bool]:
    """(state, memory-mapped?) of one file; refuses what is not a metaseq checkpoint."""
    state, mapped = safe_torch_load(f, trust_pickle=trust_pickle)
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        what = type(state).__name__ if not isinstance(state, dict) else f"a dict with keys {sorted(state)[:5]}"
        raise MetaseqCheckpointError(f, f"not a metaseq checkpoint: expected a dict with 'model' (the state dict), "
                                        f"found {what}")
    if not any(str(k).startswith("decoder.") for k in state["model"]):
        raise MetaseqCheckpointError(f, f"not a metaseq OPT checkpoint: its 'model' has no decoder.* tensors "
                                        f"({sorted(state['model'])[:3]})")
    return state, mapped


def _run_cfg(state: dict) -> Any:
    """The cfg without its `distributed_training` section: each model-parallel rank saves its own rank there."""
    cfg = plain(state.get("cfg"))
    return {k: v for k, v in cfg.items() if k != "distributed_training"} if isinstance(cfg, dict) else cfg


def _model_section(cfg: dict, args: Any) -> dict:
    model = cfg.get("model") if isinstance(cfg, dict) else None
    if isinstance(model, dict) and model:
        return model
    return args if isinstance(args, dict) else {}


def _expected_parts(cfg: dict, model_cfg: dict) -> int | None:
    for section in (cfg.get("common") if isinstance(cfg, dict) else None, model_cfg):
        if isinstance(section, dict) and isinstance(section.get("model_parallel_size"), int):
            return section["model_parallel_size"]
    return None


# ------------------------------------------------------------------------------------------- API


def metaseq_config(path: str | os.PathLike, *, trust_pickle: bool = False) -> OPTConfig:
    """The architecture of a metaseq checkpoint (reads the pickles and shapes, no tensor data)."""
    return MetaseqCheckpoint(path, trust_pickle=trust_pickle).config


def load_metaseq(path: str | os.PathLike, *, scanned: bool = False, trust_pickle: bool = False,
                 target: Any = None) -> tuple[OPTConfig, dict]:
    """(OPTConfig, float32 numpy params) from a metaseq checkpoint (layout as `load_hf_opt`).

    `target`: abstract params (`jax.ShapeDtypeStruct`s with a `sharding`, unrolled or scanned, e.g. the trainer's
    abstract state or `orbax_params.abstract_params` with shardings): each tensor is then placed on its devices as
    soon as it is merged and the result is jax arrays in `target`'s layout and dtypes, so the host holds one merged
    tensor at a time instead of the model (a scanned leaf is filled layer by layer in place on the devices)."""
    ckpt = MetaseqCheckpoint(path, trust_pickle=trust_pickle)
    if target is not None:
        return ckpt.config, _placed(ckpt, target)
    specs = {s.hf_key: s for s in tensor_specs(ckpt.config)}
    converted = ((specs[hf_key], array) for hf_key, array in ckpt.iter_hf_tensors())
    return ckpt.config, params_tree(converted, ckpt.config.num_layers, scanned)


def _placed(ckpt: MetaseqCheckpoint, target: Any) -> dict:
    """`load_metaseq(target=...)`: every merged tensor straight onto `target`'s shardings."""
    import jax
    import jax.numpy as jnp


    def leaf(path: tuple[str, ...]):
        node = target
        for k in path:
            if not isinstance(node, dict) or k not in node:
                raise MetaseqCheckpointError(ckpt.path, f"target params have no {'/'.join(path)}: not the tree of "
                                                        "the checkpoint's architecture")
            node = node[k]
        return node

    scanned = "layers" in leaf(("decoder",))
    write_layer = jax.jit(lambda s, v, i: jax.lax.dynamic_update_index_in_dim(s, v.astype(s.dtype), i, 0),
                          donate_argnums=0)
    params: dict = {}
    for spec in tensor_specs(ckpt.config):
        value = spec.to_ours(ckpt.hf_tensor(spec.hf_key))
        layered = scanned and spec.layer is not None
        path = ("decoder", "layers", *spec.path[2:]) if layered else spec.path
        want = leaf(path)
        shape = tuple(want.shape[1:] if layered else want.shape)
        if shape != value.shape:
            raise MetaseqCheckpointError(ckpt.path, f"target {'/'.join(path)} has shape {list(want.shape)}, the "
                                                    f"checkpoint's {spec.hf_key} gives {list(value.shape)}")
        if not layered:
            host = np.asarray(value, want.dtype)
            set_leaf(params, path, jax.make_array_from_callback(want.shape, want.sharding, lambda i, h=host: h[i]))
        else:
            node = params
            for k in path[:-1]:
                node = node.setdefault(k, {})
            if path[-1] not in node:
                node[path[-1]] = jax.jit(lambda w=want: jnp.zeros(w.shape, w.dtype), out_shardings=want.sharding)()
            node[path[-1]] = write_layer(node[path[-1]], np.ascontiguousarray(value), spec.layer)
        del value
    return params
