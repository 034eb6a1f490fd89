"""OPT architecture hyperparameters, with presets for every published size.

Kept free of TensorFlow/SeqIO/gin imports so the model can run on accelerator hosts that lack them.
Numbers per size come from metaseq's `opt_job_constants.py` and the Hugging Face configs
(see the paper fact sheet, section 7).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, ClassVar

# OPT's vocabulary: 50,265 BPE entries, padded to a multiple of 8 for the embedding matrix.
OPT_VOCAB_SIZE = 50272
# Learned positional embeddings are offset by 2 (fairseq's padding_idx + 1).
POSITION_OFFSET = 2

REMAT_POLICIES = ("none", "full", "dots", "dots_with_no_batch_dims")
COMPUTE_DTYPES = ("float32", "bfloat16")


@dataclasses.dataclass(frozen=True)
class FamilyConfig:
    """What every family's frozen config (`OPTConfig`, `LlamaConfig`) has the same way: the execution choices
    (fields that change neither the parameters nor the function computed, up to floating point), their checks
    and those of positive sizes, `replace`, the dict/JSON round trip (tuples travel as lists) and presets by
    name. A subclass sets `_TUPLE_FIELDS` (fields that JSON turns into lists)."""

    _TUPLE_FIELDS: ClassVar[tuple[str, ...]] = ("attention_block_sizes",)

    dtype: str = "float32"  # compute dtype; parameters are always float32
    scan_layers: bool = False
    remat_policy: str = "none"
    attention_backend: str = "reference"
    # (block_q, block_k[, block_q_bwd, block_k_bwd]); None = the backend default.
    attention_block_sizes: tuple[int, ...] | None = None

    def _common_problems(self, positive: tuple[str, ...]) -> list[str]:
        problems = [f"{name}={getattr(self, name)} must be positive" for name in positive if getattr(self, name) <= 0]
        if self.dtype not in COMPUTE_DTYPES:
            problems.append(f"dtype={self.dtype!r} is not one of {COMPUTE_DTYPES}")
        if self.remat_policy not in REMAT_POLICIES:
            problems.append(f"remat_policy={self.remat_policy!r} is not one of {REMAT_POLICIES}")
        return problems

    def _raise_if(self, problems: list[str]) -> None:
        if problems:
            raise ValueError(f"Invalid {type(self).__name__}: " + "; ".join(problems))

    def replace(self, **changes: Any):
        return dataclasses.replace(self, **changes)

    def _dict_with_lists(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for name in self._TUPLE_FIELDS:
            if isinstance(d[name], tuple):
                d[name] = list(d[name])
        return d

    @classmethod
    def _from_fields(cls, d: dict[str, Any]):
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"Unknown {cls.__name__} fields: {unknown}")
        d = dict(d)
        for name in cls._TUPLE_FIELDS:
            if isinstance(d.get(name), list):
                d[name] = tuple(d[name])
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def _from_preset(cls, presets: dict[str, dict[str, Any]], key: str, name: str, label: str, overrides: dict):
        if key not in presets:
            raise ValueError(f"Unknown {label} size {name!r}; known: {sorted(presets)}")
        return cls(**{**presets[key], **overrides})


@dataclasses.dataclass(frozen=True)
class OPTConfig(FamilyConfig):
    """Hyperparameters of an OPT decoder.

    Attributes mirror Hugging Face's `OPTConfig` where one exists (so conversion is a field copy);
    `dtype`, `scan_layers`, `remat_policy` and `attention_*` are JAX-side execution choices (`FamilyConfig`).

    The special ids (`pad_token_id`, `bos_token_id`, `eos_token_id`) are facts of a model's own files, not of
    this class: they default to None (no ids known) and come from a checkpoint's config.json
    (`optiml_jax.checkpoints.hf`), a published size's preset (`PRESETS`, copied from its hub config) or the run's
    vocabulary (`optiml_jax.training.model_config.with_vocabulary_ids`, written into model_config.json). Code that
    needs an id the config lacks fails naming the field (`optiml_jax.vocabularies.special_ids_of_config`,
    `generate`) rather than guessing. `pad_token_id=None` in the model itself: unpacked inputs have no padding.
    """

    family: ClassVar[str] = "opt"  # not a field: OPT's config.json predates it (absent = "opt")

    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    ffn_dim: int = 3072
    vocab_size: int = OPT_VOCAB_SIZE
    max_position_embeddings: int = 2048
    word_embed_proj_dim: int | None = None  # None = hidden_size (no projections)
    do_layer_norm_before: bool = True  # False only for 350m (post-LN, no final LayerNorm)
    enable_bias: bool = True
    layer_norm_elementwise_affine: bool = True
    layer_norm_eps: float = 1e-5
    dropout_rate: float = 0.1
    attention_dropout_rate: float = 0.0
    activation: str = "relu"
    init_std: float = 0.02
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | None = None

    def __post_init__(self):
        problems = self._common_problems(("hidden_size", "num_layers", "num_heads", "ffn_dim", "vocab_size",
                                          "max_position_embeddings"))
        if self.hidden_size % self.num_heads:
            problems.insert(0, f"hidden_size={self.hidden_size} is not divisible by num_heads={self.num_heads}")
        if self.activation != "relu":
            problems.append(f"activation={self.activation!r}: OPT uses relu")
        self._raise_if(problems)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def embed_dim(self) -> int:
        """Width of the token embedding (differs from hidden_size only for 350m-style models)."""
        return self.word_embed_proj_dim or self.hidden_size

    @property
    def has_projections(self) -> bool:
        return self.embed_dim != self.hidden_size

    def to_dict(self) -> dict[str, Any]:
        return self._dict_with_lists()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "OPTConfig":
        return cls._from_fields(d)

    def num_params(self, include_embeddings: bool = True) -> int:
        """Parameter count (embedding tied with the LM head, so counted once)."""
        h, f, e = self.hidden_size, self.ffn_dim, self.embed_dim
        per_layer = 4 * (h * h + h) + (h * f + f) + (f * h + h) + 2 * 2 * h
        n = self.num_layers * per_layer
        if self.do_layer_norm_before:
            n += 2 * h
        if self.has_projections:
            n += 2 * e * h
        if include_embeddings:
            n += self.vocab_size * e + (self.max_position_embeddings + POSITION_OFFSET) * h
        return n

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "OPTConfig":
        """An OPT size by name ('125m' ... '175b', or 'tiny'); keyword overrides win.

        A published size carries its hub config.json's special ids (pad 1, bos = eos 2). 'tiny' carries none: it
        is not a published model and has no tokenizer of its own; the runs that use it train over several
        vocabularies (the OPT tokenizer in the quickstart, the mini-benchmark's 2048-entry BPE, the synthetic
        stream's ids), and each run's vocabulary stamps its own ids into the config it writes
        (`optiml_jax.training.model_config.with_vocabulary_ids`). Any id 'tiny' carried would be a guess that
        silently holds whenever no vocabulary corrects it; without ids, a use that needs one and has no
        vocabulary fails naming the field. Pass the ids as overrides to use 'tiny' bare."""
        key = name.lower().replace("opt-", "").replace("opt_", "").replace("_", ".")
        return cls._from_preset(PRESETS, key, name, "OPT", overrides)


def _size(layers: int, hidden: int, heads: int, **kw: Any) -> dict[str, Any]:
    return dict(num_layers=layers, hidden_size=hidden, num_heads=heads, ffn_dim=4 * hidden, **kw)


# The published models' special ids, as every facebook/opt-{125m,350m,1.3b,2.7b,6.7b,13b,30b,66b} config.json on
# the Hugging Face hub sets them (pad "<pad>" = 1, bos = eos = "</s>" = 2: the hub configs changed bos from 0 to 2,
# transformers issue #17431). OPT-175B is not on the hub; metaseq released it with the same dictionary.
_OPT_HUB_IDS = dict(pad_token_id=1, bos_token_id=2, eos_token_id=2)

PRESETS: dict[str, dict[str, Any]] = {
    "125m": _size(12, 768, 12, **_OPT_HUB_IDS),
    "350m": _size(24, 1024, 16, word_embed_proj_dim=512, do_layer_norm_before=False, **_OPT_HUB_IDS),
    "1.3b": _size(24, 2048, 32, **_OPT_HUB_IDS),
    "2.7b": _size(32, 2560, 32, **_OPT_HUB_IDS),
    "6.7b": _size(32, 4096, 32, **_OPT_HUB_IDS),
    "13b": _size(40, 5120, 40, **_OPT_HUB_IDS),
    "30b": _size(48, 7168, 56, **_OPT_HUB_IDS),
    "66b": _size(64, 9216, 72, **_OPT_HUB_IDS),
    "175b": _size(96, 12288, 96, **_OPT_HUB_IDS),
    # Test/quickstart size, not a published model: no special ids (why: `OPTConfig.preset`).
    "tiny": dict(num_layers=2, hidden_size=64, num_heads=4, ffn_dim=256, max_position_embeddings=512),
}
