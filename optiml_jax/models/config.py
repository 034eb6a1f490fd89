"""OPT architecture hyperparameters, with presets for every published size.

Kept free of TensorFlow/SeqIO/gin imports so the model can run on accelerator hosts that lack them.
Numbers per size come from metaseq's `opt_job_constants.py` and the Hugging Face configs
(see the paper fact sheet, section 7).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, ClassVar

from optiml_jax.vocabularies.special_tokens import EOS_ID, PAD_ID

# OPT's vocabulary: 50,265 BPE entries, padded to a multiple of 8 for the embedding matrix.
OPT_VOCAB_SIZE = 50272
# Learned positional embeddings are offset by 2 (fairseq's padding_idx + 1).
POSITION_OFFSET = 2

REMAT_POLICIES = ("none", "full", "dots", "dots_with_no_batch_dims")
COMPUTE_DTYPES = ("float32", "bfloat16")


@dataclasses.dataclass(frozen=True)
class OPTConfig:
    """Hyperparameters of an OPT decoder.

    Attributes mirror Hugging Face's `OPTConfig` where one exists (so conversion is a field copy);
    `dtype`, `scan_layers`, `remat_policy` and `attention_*` are JAX-side execution choices that
    do not change the parameters or the function computed (up to floating point).
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
    pad_token_id: int = PAD_ID
    bos_token_id: int = EOS_ID  # hub configs set bos = eos = 2 for OPT
    eos_token_id: int = EOS_ID
    # Execution choices (no effect on parameters).
    dtype: str = "float32"  # compute dtype; parameters are always float32
    scan_layers: bool = False
    remat_policy: str = "none"
    attention_backend: str = "reference"
    # (block_q, block_k[, block_q_bwd, block_k_bwd]); None = the backend default.
    attention_block_sizes: tuple[int, ...] | None = None

    def __post_init__(self):
        problems = []
        if self.hidden_size % self.num_heads:
            problems.append(f"hidden_size={self.hidden_size} is not divisible by num_heads={self.num_heads}")
        if self.dtype not in COMPUTE_DTYPES:
            problems.append(f"dtype={self.dtype!r} is not one of {COMPUTE_DTYPES}")
        if self.remat_policy not in REMAT_POLICIES:
            problems.append(f"remat_policy={self.remat_policy!r} is not one of {REMAT_POLICIES}")
        if self.activation != "relu":
            problems.append(f"activation={self.activation!r}: OPT uses relu")
        for name in ("hidden_size", "num_layers", "num_heads", "ffn_dim", "vocab_size", "max_position_embeddings"):
            if getattr(self, name) <= 0:
                problems.append(f"{name}={getattr(self, name)} must be positive")
        if problems:
            raise ValueError("Invalid OPTConfig: " + "; ".join(problems))

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

    def replace(self, **changes: Any) -> "OPTConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if d["attention_block_sizes"] is not None:
            d["attention_block_sizes"] = list(d["attention_block_sizes"])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "OPTConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"Unknown OPTConfig fields: {unknown}")
        d = dict(d)
        if d.get("attention_block_sizes") is not None:
            d["attention_block_sizes"] = tuple(d["attention_block_sizes"])
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

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
        """An OPT size by name ('125m' ... '175b', or 'tiny'); keyword overrides win."""
        key = name.lower().replace("opt-", "").replace("opt_", "").replace("_", ".")
        if key not in PRESETS:
            raise ValueError(f"Unknown OPT size {name!r}; known: {sorted(PRESETS)}")
        return cls(**{**PRESETS[key], **overrides})


def _size(layers: int, hidden: int, heads: int, **kw: Any) -> dict[str, Any]:
    return dict(num_layers=layers, hidden_size=hidden, num_heads=heads, ffn_dim=4 * hidden, **kw)


PRESETS: dict[str, dict[str, Any]] = {
    "125m": _size(12, 768, 12),
    "350m": _size(24, 1024, 16, word_embed_proj_dim=512, do_layer_norm_before=False),
    "1.3b": _size(24, 2048, 32),
    "2.7b": _size(32, 2560, 32),
    "6.7b": _size(32, 4096, 32),
    "13b": _size(40, 5120, 40),
    "30b": _size(48, 7168, 56),
    "66b": _size(64, 9216, 72),
    "175b": _size(96, 12288, 96),
    # Test/quickstart sizes (not published models).
    "tiny": dict(num_layers=2, hidden_size=64, num_heads=4, ffn_dim=256, max_position_embeddings=512),
}
