"""Llama-family hyperparameters (Llama 2/3, Mistral without sliding window, Qwen2), with presets.

Kept free of TensorFlow/SeqIO/gin (and of flax) like `config.py`. Field names follow our `OPTConfig` where
the meaning is the same (`num_layers`, `num_heads`, `ffn_dim`, execution choices) and Hugging Face's
`LlamaConfig` otherwise; `optiml_jax.checkpoints.hf_llama` maps between the two.

`family` ("llama") is written by `to_dict`, so a checkpoint's `config.json` says which model class reads it
(`optiml_jax.models.config_from_dict`); OPT configs predate the field and mean "opt" when it is absent.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import numpy as np

from optiml_jax.models.config import FamilyConfig

LLAMA3_VOCAB_SIZE = 128256
ROPE_TYPES = ("default", "llama3")
HF_MODEL_TYPES = ("llama", "mistral", "qwen2")


@dataclasses.dataclass(frozen=True)
class LlamaConfig(FamilyConfig):
    """Hyperparameters of a Llama-style decoder: RMSNorm, rotary positions, SwiGLU MLP, grouped-query attention.

    `num_kv_heads` (Hugging Face's `num_key_value_heads`) must divide `num_heads`; `head_dim` defaults to
    `hidden_size // num_heads`. `attention_bias` adds biases to q/k/v (Qwen2; Llama's `attention_bias` also sets
    `attention_out_bias`). RoPE: `rope_type` 'default' (inverse frequencies theta^(-2i/d)) or 'llama3' (Llama 3.1
    frequency scaling with `rope_factor`, `rope_low_freq_factor`, `rope_high_freq_factor`,
    `rope_original_max_position_embeddings`). `pad_token_id=None`: unpacked inputs have no padding (every token
    is real); give a pad id to left-pad. `hf_model_type` only records which Hugging Face architecture to export.

    The special ids default to None (no ids known), as in `OPTConfig`: they come from a checkpoint's config.json
    (`optiml_jax.checkpoints.hf_llama`), a published size's preset (`LLAMA_PRESETS`, copied from its hub config)
    or the run's vocabulary (`optiml_jax.training.model_config.with_vocabulary_ids`).
    """

    family: ClassVar[str] = "llama"
    _TUPLE_FIELDS: ClassVar[tuple[str, ...]] = ("attention_block_sizes", "eos_token_id")

    hidden_size: int = 2048
    num_layers: int = 16
    num_heads: int = 32
    num_kv_heads: int = 8
    ffn_dim: int = 8192
    vocab_size: int = LLAMA3_VOCAB_SIZE
    max_position_embeddings: int = 8192
    head_dim_override: int | None = None  # HF `head_dim` when it is not hidden_size // num_heads
    rms_norm_eps: float = 1e-5
    rope_theta: float = 500000.0
    rope_type: str = "default"
    rope_factor: float = 1.0
    rope_low_freq_factor: float = 1.0
    rope_high_freq_factor: float = 4.0
    rope_original_max_position_embeddings: int | None = None
    attention_bias: bool = False  # q/k/v biases
    attention_out_bias: bool = False  # o_proj bias
    mlp_bias: bool = False
    tie_word_embeddings: bool = False
    hidden_act: str = "silu"
    init_std: float = 0.02
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | tuple[int, ...] | None = None
    hf_model_type: str = "llama"
    dropout_rate: float = 0.0  # residual dropout (Llama trains without; available for fine-tuning)

    def __post_init__(self):
        problems = self._common_problems(("hidden_size", "num_layers", "num_heads", "num_kv_heads", "ffn_dim",
                                          "vocab_size", "max_position_embeddings"))
        if self.num_kv_heads > 0 and self.num_heads % self.num_kv_heads:
            problems.append(f"num_heads={self.num_heads} is not a multiple of num_kv_heads={self.num_kv_heads}")
        if self.head_dim_override is None and self.num_heads > 0 and self.hidden_size % self.num_heads:
            problems.append(f"hidden_size={self.hidden_size} is not divisible by num_heads={self.num_heads} "
                            "(set head_dim_override)")
        if self.head_dim % 2:
            problems.append(f"head_dim={self.head_dim} must be even for rotary embeddings")
        if self.rope_type not in ROPE_TYPES:
            problems.append(f"rope_type={self.rope_type!r} is not one of {ROPE_TYPES}")
        if self.rope_type == "llama3" and self.rope_high_freq_factor <= self.rope_low_freq_factor:
            problems.append("llama3 rope needs rope_high_freq_factor > rope_low_freq_factor")
        if self.hidden_act != "silu":
            problems.append(f"hidden_act={self.hidden_act!r}: only silu (SwiGLU) is supported")
        if self.hf_model_type not in HF_MODEL_TYPES:
            problems.append(f"hf_model_type={self.hf_model_type!r} is not one of {HF_MODEL_TYPES}")
        self._raise_if(problems)

    @property
    def head_dim(self) -> int:
        return self.head_dim_override or self.hidden_size // max(self.num_heads, 1)

    @property
    def embed_dim(self) -> int:
        """Width of the token embedding and of the features the LM head reads (= hidden_size)."""
        return self.hidden_size

    @property
    def eos_token_ids(self) -> tuple[int, ...]:
        if self.eos_token_id is None:
            return ()
        return tuple(self.eos_token_id) if isinstance(self.eos_token_id, tuple) else (self.eos_token_id,)

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, **self._dict_with_lists()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LlamaConfig":
        d = dict(d)
        family = d.pop("family", cls.family)
        if family != cls.family:
            raise ValueError(f"config family {family!r} is not {cls.family!r}")
        return cls._from_fields(d)

    def num_params(self, include_embeddings: bool = True) -> int:
        h, f, hd = self.hidden_size, self.ffn_dim, self.head_dim
        q, kv = self.num_heads * hd, self.num_kv_heads * hd
        attn = h * q + 2 * h * kv + q * h
        if self.attention_bias:
            attn += q + 2 * kv
        if self.attention_out_bias:
            attn += h
        mlp = 3 * h * f + ((2 * f + h) if self.mlp_bias else 0)
        n = self.num_layers * (attn + mlp + 2 * h) + h
        if include_embeddings:
            n += self.vocab_size * h * (1 if self.tie_word_embeddings else 2)
        return n

    def rope_inv_freq(self) -> np.ndarray:
        """Inverse frequencies [head_dim // 2] float32, computed as Hugging Face does (float32 arithmetic)."""
        dim = self.head_dim
        exponents = np.arange(0, dim, 2, dtype=np.int64).astype(np.float32) / np.float32(dim)
        inv_freq = (np.float32(1.0) / (np.float32(self.rope_theta) ** exponents)).astype(np.float32)
        if self.rope_type == "default":
            return inv_freq
        factor = np.float32(self.rope_factor)
        low, high = self.rope_low_freq_factor, self.rope_high_freq_factor
        old = self.rope_original_max_position_embeddings or self.max_position_embeddings
        low_wavelen, high_wavelen = old / low, old / high
        wavelen = (np.float32(2 * math.pi) / inv_freq).astype(np.float32)
        scaled = np.where(wavelen > low_wavelen, inv_freq / factor, inv_freq).astype(np.float32)
        smooth = ((np.float32(old) / wavelen - np.float32(low)) / np.float32(high - low)).astype(np.float32)
        smoothed = ((1 - smooth) * scaled / factor + smooth * scaled).astype(np.float32)
        medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
        return np.where(medium, smoothed, scaled).astype(np.float32)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "LlamaConfig":
        """A size by name ('tiny', '1b' = Llama-3.2-1B, '8b' = Llama-3-8B); keyword overrides win.

        '1b' and '8b' carry their hub config.json's special ids (bos 128000, eos 128001, no pad). 'tiny' (Llama 3's
        vocabulary size, not a published model) carries none, as `OPTConfig.preset('tiny')`: the runs that use it
        bring a tokenizer (Llama 3's, the mini-benchmark's OPT-style BPE), whose ids the run stamps into its config
        (`optiml_jax.training.model_config.with_vocabulary_ids`); pass the ids as overrides to use it bare."""
        key = name.lower().replace("llama-3.2-", "").replace("llama-3-", "").replace("llama3_", "")
        return cls._from_preset(LLAMA_PRESETS, key, name, "Llama", overrides)


_LLAMA3 = dict(vocab_size=LLAMA3_VOCAB_SIZE, rope_theta=500000.0, rms_norm_eps=1e-5)
# The base models' ids, as meta-llama/Llama-3.2-1B's and meta-llama/Meta-Llama-3-8B's config.json set them
# ("<|begin_of_text|>" = 128000, "<|end_of_text|>" = 128001, no pad_token_id).
_LLAMA3_HUB_IDS = dict(bos_token_id=128000, eos_token_id=128001)

LLAMA_PRESETS: dict[str, dict[str, Any]] = {
    # meta-llama/Llama-3.2-1B: tied embeddings, llama3 RoPE scaling to 128k positions.
    "1b": dict(_LLAMA3, **_LLAMA3_HUB_IDS, num_layers=16, hidden_size=2048, num_heads=32, num_kv_heads=8,
               ffn_dim=8192, max_position_embeddings=131072, tie_word_embeddings=True, rope_type="llama3",
               rope_factor=32.0, rope_low_freq_factor=1.0, rope_high_freq_factor=4.0,
               rope_original_max_position_embeddings=8192),
    # meta-llama/Meta-Llama-3-8B: untied LM head, plain RoPE, 8k positions.
    "8b": dict(_LLAMA3, **_LLAMA3_HUB_IDS, num_layers=32, hidden_size=4096, num_heads=32, num_kv_heads=8,
               ffn_dim=14336, max_position_embeddings=8192, tie_word_embeddings=False),
    # Test/quickstart size (not a published model) with the Llama 3 vocabulary's size and no special ids
    # (why: `LlamaConfig.preset`).
    "tiny": dict(_LLAMA3, num_layers=2, hidden_size=64, num_heads=4, num_kv_heads=2, ffn_dim=176,
                 max_position_embeddings=512, tie_word_embeddings=True),
}
