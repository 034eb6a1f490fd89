"""Batched greedy (or sampled) decoding for evaluation, on top of `optiml_jax.models.generate` (KV cache).

What this layer adds to the model's `generate`: prompts of different lengths are left-padded to a
power-of-two bucket (few compiled shapes), the batch is padded to a multiple of the mesh size and
placed data-parallel over the mesh, and outputs are cut at the first stop id (dropped) so callers get just the
continuation tokens. Stop and pad ids are the run's (`SpecialIds`: the vocabulary's eos ids and pad, OPT's
`</s>` = 2 / `<pad>` = 1 by default).
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh

from optiml_jax.evaluation.scoring import _put, bucket_length, mesh_size, to_host
from optiml_jax.models import ModelConfig, generate
from optiml_jax.vocabularies.special_ids import SpecialIds, special_ids_of_config

DEFAULT_MAX_NEW_TOKENS = 256  # the paper's generation limit (section 4.1)


def left_pad(prompts: Sequence[Sequence[int]], width: int, rows: int, pad_id: int) -> np.ndarray:
    out = np.full((rows, width), pad_id, np.int32)
    for i, p in enumerate(prompts):
        if len(p) == 0:
            raise ValueError(f"prompt {i} is empty: start prompts with the vocabulary's bos (OPT: </s>)")
        out[i, width - len(p):] = p
    return out


def cut_at_eos(tokens: Sequence[int], eos_id: int | Sequence[int], pad_id: int) -> list[int]:
    """Tokens before the first stop id (`eos_id`: one or several), without padding."""
    stops = {int(e) for e in (eos_id if isinstance(eos_id, (tuple, list, set, frozenset)) else [eos_id])}
    out = []
    for t in tokens:
        if t in stops:
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
    special_ids: SpecialIds | None = None,
) -> tuple[list[list[int]], np.ndarray]:
    """Continue each prompt until a stop id or `max_new_tokens`.

    Returns (continuations cut at the stop id, raw output [num_prompts, max_new_tokens]). Prompts longer than
    `max_position_embeddings - max_new_tokens` must be truncated by the caller (from the left). `special_ids`:
    the run's stop and pad ids (default: the model config's).
    """
    ids = special_ids or special_ids_of_config(config)
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
    tokens = left_pad(prompts, width, rows, ids.pad)
    if mesh is not None:
        tokens = _put(tokens, mesh)
    out = generate(config, params, tokens, max_new_tokens=max_new_tokens, eos_id=ids.eos, pad_id=ids.pad,
                   temperature=temperature, rng=rng)
    out = to_host(out)[: len(prompts)]
    return [cut_at_eos(row, ids.eos, ids.pad) for row in out], out
