"""Log-likelihood scoring of target tokens: the compiled kernels behind rank classification.

Two entry points:

* `score_token_batch(config, params, batch)` scores a T5X decoder batch (`decoder_input_tokens`,
  `decoder_target_tokens`, `decoder_loss_weights`, optional `decoder_segment_ids`/`decoder_positions`)
  with one full forward pass: per example, the summed log-probability of the weighted target tokens,
  whether every weighted target token is the argmax (greedy) continuation, and how many tokens were scored.
  Packed rows (several segments) are summed per *row*, like T5X's `score_batch`.

* `score_shared_prompts(config, params, prompts, options)` scores several continuations ("options") of
  the same prompt with the prompt encoded once. Why: a multiple-choice example has one long prompt
  (instructions, demonstrations, question) and a few short answers; re-encoding the prompt per answer
  (what a plain batch does, and what lm-eval's Hugging Face backend does) costs `num_options` times the
  prompt FLOPs. Here the prompt minus its last token is prefilled into the model's KV cache once per
  prompt, the cache rows are repeated once per option, and each option is fed as one chunk
  `[last prompt token, option tokens...]` at explicit positions. The model returns features, not logits:
  only the positions that predict an option token (gathered, not the padded [rows, width] block) pay
  for the vocabulary projection, which at 50k vocabulary costs as much as the rest of a 125m forward.
  Prompts are right-padded: padded cache slots carry segment id 0 and are masked out of attention.

Both functions are jitted per padded shape (lengths are bucketed by the caller) and run data-parallel
over `mesh` when one is given (batch dimension split over the mesh, parameters replicated).
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from optiml_jax.models import ModelConfig, lm_head_logits, lm_head_weight, model_for
from optiml_jax.models.layout import to_layout
from optiml_jax.vocabularies.special_ids import special_ids_of_config



def prepare_params(config: ModelConfig, params: Any) -> tuple[ModelConfig, Any]:
    """Unboxed params in the unrolled layout, and a config that says so (the KV-cache code assumes it)."""
    params = to_layout(nn.unbox(params), False)
    return config.replace(scan_layers=False, remat_policy="none"), params


def bucket_length(n: int, minimum: int = 8) -> int:
    """Round a length up to a power of two (>= minimum) so few distinct shapes are compiled."""
    size = minimum
    while size < n:
        size *= 2
    return size


def batch_sharding(mesh: Mesh | None, ndim: int) -> NamedSharding | None:
    """Split dimension 0 over every mesh axis (pure data parallelism); None without a mesh."""
    if mesh is None:
        return None
    return NamedSharding(mesh, PartitionSpec(tuple(mesh.axis_names), *([None] * (ndim - 1))))


def mesh_size(mesh: Mesh | None) -> int:
    return 1 if mesh is None else int(np.prod(list(mesh.shape.values())))


def _put(x: np.ndarray, mesh: Mesh | None):
    """Host array -> device array split over `mesh` along dim 0 (every process passes the same `x`)."""
    sharding = batch_sharding(mesh, x.ndim)
    if sharding is None:
        return jnp.asarray(x)
    # make_array_from_callback, not device_put: each process builds only its addressable shards, which also
    # works when the mesh spans several processes (the trainer's evaluation callback on a multi-host run).
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def to_host(x: jax.Array) -> np.ndarray:
    """The whole value of a (possibly multi-process) output array, on every process."""
    if getattr(x, "is_fully_addressable", True):
        return np.asarray(x)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def _token_logprobs(logits: jax.Array, targets: jax.Array) -> tuple[jax.Array, jax.Array]:
    """log p(target) and whether target is the argmax, per position."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    picked = jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
    greedy = jnp.argmax(logits, axis=-1) == targets
    return picked, greedy


@functools.partial(jax.jit, static_argnames=("config",))
def _score_tokens(config: ModelConfig, params: Any, inputs, targets, weights, segment_ids, positions):
    logits = model_for(config).apply({"params": params}, inputs, decoder_segment_ids=segment_ids,
                                     decoder_positions=positions)
    picked, greedy = _token_logprobs(logits, targets)
    weights = weights.astype(jnp.float32)
    scores = jnp.sum(picked * weights, axis=-1)
    all_greedy = jnp.all(greedy | (weights == 0), axis=-1)
    return scores, all_greedy, jnp.sum(weights, axis=-1)


def score_token_batch(config: ModelConfig, params: Any, batch: dict[str, np.ndarray], *, mesh: Mesh | None = None,
                      pad_id: int | None = None):
    """Summed target log-likelihood per row of a T5X decoder batch -> (scores, is_greedy, num_tokens) numpy [B].

    `params` must come from `prepare_params`. Without segment ids, pad tokens (`pad_id`, default the config's;
    none known: every token is real) in the inputs are segment 0 and positions follow Hugging Face's rule (see
    optiml_jax.models.default_positions).
    """
    missing = [k for k in ("decoder_input_tokens", "decoder_target_tokens", "decoder_loss_weights") if k not in batch]
    if missing:
        raise ValueError(f"score batch lacks features {missing}; has {sorted(batch)}")
    inputs = np.asarray(batch["decoder_input_tokens"], np.int32)
    targets = np.asarray(batch["decoder_target_tokens"], np.int32)
    weights = np.asarray(batch["decoder_loss_weights"], np.float32)
    if "decoder_segment_ids" in batch:
        segments = np.asarray(batch["decoder_segment_ids"], np.int32)
        positions = np.asarray(batch["decoder_positions"], np.int32)
    else:
        pad_id = config.pad_token_id if pad_id is None else pad_id
        # no pad id known (given or in the config): every token is real, as `default_positions` has it
        segments = np.ones_like(inputs) if pad_id is None else (inputs != int(pad_id)).astype(np.int32)
        positions = np.maximum(np.cumsum(segments, axis=1) * segments - 1, 0).astype(np.int32)
    n = inputs.shape[0]
    pad_rows = (-n) % mesh_size(mesh)
    arrays = [inputs, targets, weights, segments, positions]
    if pad_rows:
        arrays = [np.concatenate([a, np.zeros((pad_rows,) + a.shape[1:], a.dtype)]) for a in arrays]
    arrays = [_put(a, mesh) for a in arrays]
    scores, greedy, count = _score_tokens(config, params, *arrays)
    return to_host(scores)[:n], to_host(greedy)[:n], to_host(count)[:n]


@functools.partial(jax.jit, static_argnames=("config", "num_options"))
def _score_shared(config: ModelConfig, params: Any, prefix, prefix_len, chunk, chunk_len, score_index, score_row,
                  score_valid, *, num_options: int):
    """prefix [P, Lp] right-padded (prompt minus last token), chunk [P*N, 1+Lo] = last prompt token + option.

    score_index [K]: flat indices into chunk[:, :-1] of the positions whose next token is an option token,
    score_row [K] the chunk row each belongs to, score_valid [K] False for the padding entries. Only those
    K positions go through the LM head (a [K, vocab] matmul instead of [P*N*Lo, vocab]: options are a few
    tokens, padded to the longest option of the batch).
    """
    model = model_for(config)
    rows, prefix_width = prefix.shape
    chunk_rows, chunk_width = chunk.shape
    shapes = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.ones((rows, prefix_width + chunk_width), jnp.int32), decode=True)
    )["cache"]
    cache = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    prefix_cols = jnp.arange(prefix_width)[None, :]
    prefix_segments = (prefix_cols < prefix_len[:, None]).astype(jnp.int32)
    _, mutated = model.apply({"params": params, "cache": cache}, prefix, decoder_segment_ids=prefix_segments,
                             decoder_positions=prefix_cols * prefix_segments, decode=True, mutable=["cache"],
                             return_features=True)
    # One cache row per option; the scalar cache index is shared.
    cache = jax.tree.map(lambda c: jnp.repeat(c, num_options, axis=0) if c.ndim else c, mutated["cache"])
    start = jnp.repeat(prefix_len, num_options)  # position of the last prompt token
    chunk_cols = jnp.arange(chunk_width)[None, :]
    chunk_segments = (chunk_cols < chunk_len[:, None]).astype(jnp.int32)
    features, _ = model.apply({"params": params, "cache": cache}, chunk, decoder_segment_ids=chunk_segments,
                              decoder_positions=start[:, None] + chunk_cols, decode=True, mutable=["cache"],
                              return_features=True)
    features = features[:, :-1].reshape(chunk_rows * (chunk_width - 1), -1)[score_index]
    targets = chunk[:, 1:].reshape(-1)[score_index]
    logits = lm_head_logits(config, lm_head_weight(config, params), features)
    picked, greedy = _token_logprobs(logits, targets)
    scores = jax.ops.segment_sum(jnp.where(score_valid, picked, 0.0), score_row, num_segments=chunk_rows)
    misses = jax.ops.segment_sum((score_valid & ~greedy).astype(jnp.int32), score_row, num_segments=chunk_rows)
    return scores, misses == 0


def _scored_positions(chunk_len: np.ndarray, chunk_width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(flat index into chunk[:, :-1], row, valid) of every position that predicts an option token.

    Padded with row-0 index 0 entries (valid False) to a bucketed count, so few shapes are compiled.
    """
    rows = np.repeat(np.arange(len(chunk_len)), np.maximum(chunk_len - 1, 0))
    cols = np.concatenate([np.arange(n - 1) for n in chunk_len]) if len(chunk_len) else np.zeros(0, np.int64)
    count = bucket_length(len(rows))
    index = np.zeros(count, np.int32)
    row = np.zeros(count, np.int32)
    valid = np.zeros(count, bool)
    index[: len(rows)] = rows * (chunk_width - 1) + cols
    row[: len(rows)] = rows
    valid[: len(rows)] = True
    return index, row, valid


def score_shared_prompts(
    config: ModelConfig,
    params: Any,
    prompts: Sequence[Sequence[int]],
    options: Sequence[Sequence[Sequence[int]]],
    *,
    mesh: Mesh | None = None,
    min_rows: int = 1,
    pad_id: int | None = None,
) -> list[list[tuple[float, bool]]]:
    """Score every option of every prompt: returns [(summed log-prob, is_greedy), ...] per prompt.

    `params` must come from `prepare_params`. Each prompt needs >= 1 token (OPT prompts start with `</s>`);
    each option >= 1 token. `pad_id` fills the padding (masked out; default: the config's pad, else its eos). Callers keep `len(prompt) + len(option) <= config.max_position_embeddings`.
    One compiled call handles the whole group; lengths, option counts and the number of prompts (to at least
    `min_rows`) are padded to buckets so that few shapes are compiled.
    """
    if len(prompts) != len(options):
        raise ValueError(f"{len(prompts)} prompts but {len(options)} option lists")
    for i, (p, opts) in enumerate(zip(prompts, options)):
        if len(p) < 1:
            raise ValueError(f"prompt {i} is empty: start prompts with the vocabulary's bos (OPT: </s>)")
        if not opts or any(len(o) < 1 for o in opts):
            raise ValueError(f"prompt {i} has no options or an empty option")
        longest = len(p) + max(len(o) for o in opts)
        if longest > config.max_position_embeddings:
            raise ValueError(f"prompt {i}: {longest} tokens exceed max_position_embeddings="
                             f"{config.max_position_embeddings}; truncate the prompt from the left")
    num_options = bucket_length(max(len(o) for o in options), minimum=2)
    rows = max(len(prompts), min_rows)
    rows += (-rows) % mesh_size(mesh)
    prefix_width = bucket_length(max(len(p) - 1 for p in prompts), minimum=16)
    chunk_width = bucket_length(1 + max(len(o) for opts in options for o in opts))
    pad_id = special_ids_of_config(config).pad if pad_id is None else int(pad_id)
    prefix = np.full((rows, prefix_width), pad_id, np.int32)
    prefix_len = np.zeros((rows,), np.int32)
    chunk = np.full((rows * num_options, chunk_width), pad_id, np.int32)
    chunk_len = np.zeros((rows * num_options,), np.int32)
    for i, (p, opts) in enumerate(zip(prompts, options)):
        prefix[i, : len(p) - 1] = p[:-1]
        prefix_len[i] = len(p) - 1
        for j, o in enumerate(opts):
            r = i * num_options + j
            chunk[r, 0] = p[-1]
            chunk[r, 1 : 1 + len(o)] = o
            chunk_len[r] = 1 + len(o)
    score_index, score_row, score_valid = _scored_positions(chunk_len, chunk_width)
    scores, greedy = _score_shared(
        config, params, _put(prefix, mesh), _put(prefix_len, mesh), _put(chunk, mesh), _put(chunk_len, mesh),
        score_index, score_row, score_valid, num_options=num_options,
    )
    scores, greedy = to_host(scores), to_host(greedy)
    return [
        [(float(scores[i * num_options + j]), bool(greedy[i * num_options + j])) for j in range(len(opts))]
        for i, opts in enumerate(options)
    ]
