"""Batched greedy (or sampled) decoding for evaluation, on top of `optiml_jax.models.generate` (KV cache).

What this layer adds to the model's `generate`: prompts of different lengths are left-padded to a
power-of-two bucket (few compiled shapes), the batch is padded to a multiple of the mesh size and
placed data-parallel over the mesh, and outputs are cut at the first `</s>` (the `</s>` itself is
dropped) so callers get just the continuation tokens.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh

from optiml_jax.evaluation.scoring import _put, bucket_length, mesh_size, to_host
from optiml_jax.vocabularies.special_tokens import EOS_ID, PAD_ID
from optiml_jax.models import ModelConfig, generate

DEFAULT_MAX_NEW_TOKENS = 256  # the paper's generation limit (section 4.1)


def left_pad(prompts: Sequence[Sequence[int]], width: int, rows: int) -> np.ndarray:
    out = np.full((rows, width), PAD_ID, np.int32)
    for i, p in enumerate(prompts):
        if len(p) == 0:
            raise ValueError(f"prompt {i} is empty: start prompts with </s> (id 2)")
        out[i, width - len(p):] = p
    return out


def cut_at_eos(tokens: Sequence[int], eos_id: int = EOS_ID, pad_id: int = PAD_ID) -> list[int]:
    """Tokens before the first `</s>`, without padding."""
    out = []
    for t in tokens:
        if t == eos_id:
            break
        if t != pad_id:
            out.append(int(t))
    return out


def generate_tokens(
    config: ModelConfig,
    params: Any,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    temperature: float = 0.0,
    rng: jax.Array | None = None,
    mesh: Mesh | None = None,
    min_rows: int = 1,
) -> tuple[list[list[int]], np.ndarray]:
    """Continue each prompt until `</s>` or `max_new_tokens`.

    Returns (continuations cut at `</s>`, raw output [num_prompts, max_new_tokens]). Prompts longer than
    `max_position_embeddings - max_new_tokens` must be truncated by the caller (from the left).
    """
    if not prompts:
        return [], np.zeros((0, max_new_tokens), np.int32)
    limit = config.max_position_embeddings - max_new_tokens
    too_long = [i for i, p in enumerate(prompts) if len(p) > limit]
    if too_long:
        raise ValueError(f"prompts {too_long[:5]} exceed {limit} tokens (max_position_embeddings - max_new_tokens); "
                         f"truncate them from the left")
    width = min(bucket_length(max(len(p) for p in prompts), minimum=32), limit)
    rows = max(len(prompts), min_rows)  # a fixed batch size keeps the number of compiled shapes small
    rows += (-rows) % mesh_size(mesh)
    tokens = left_pad(prompts, width, rows)
    if mesh is not None:
        tokens = _put(tokens, mesh)
    out = generate(config, params, tokens, max_new_tokens=max_new_tokens, eos_id=EOS_ID, pad_id=PAD_ID,
                   temperature=temperature, rng=rng)
    out = to_host(out)[: len(prompts)]
    return [cut_at_eos(row) for row in out], out
