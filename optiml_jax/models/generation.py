"""Autoregressive generation with a KV cache, compiled as one XLA program, for every decoder family
(`OPTConfig` -> `OPT`, `LlamaConfig` -> `Llama`; `family.model_for`). With grouped-query attention the
cache holds the key/value heads only.

`generate` prefills the cache with a left-padded prompt (pad tokens are segment 0, positions follow
Hugging Face's cumsum rule), then decodes one token per `jax.lax.while_loop` step (stopping once every row is done), so the whole loop is a
single jitted computation. Rows that emitted `eos_id` emit `pad_id` from then on (Hugging Face's
convention), so the output always has `max_new_tokens` columns.

`greedy_reference` recomputes a full forward pass per new token (no cache). It is slow and exists so
tests can check that the cached path picks exactly the same tokens.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from optiml_jax.models.common import default_positions, lm_head_logits
from optiml_jax.models.family import ModelConfig, lm_head_weight, model_for
from optiml_jax.models.layout import to_layout

Array = jax.Array


def _prepare(config: ModelConfig, params: Any, prompt_tokens: Any, max_new_tokens: int) -> tuple[Any, Array]:
    prompt = jnp.asarray(prompt_tokens, jnp.int32)
    if prompt.ndim != 2:
        raise ValueError(f"prompt_tokens must be [batch, length], got shape {prompt.shape}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    total = prompt.shape[1] + max_new_tokens
    if total > config.max_position_embeddings:
        raise ValueError(f"prompt length {prompt.shape[1]} + max_new_tokens {max_new_tokens} = {total} exceeds "
                         f"max_position_embeddings={config.max_position_embeddings}")
    return to_layout(nn.unbox(params), config.scan_layers), prompt


def _pick(logits: Array, temperature: float, rng: Array) -> Array:
    """Greedy argmax at temperature 0, otherwise a sample from softmax(logits / temperature)."""
    if temperature == 0.0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    return jax.random.categorical(rng, logits / temperature, axis=-1).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("config", "max_new_tokens", "temperature"))
def _generate(config, params, prompt, rng, eos_ids, pad_id, *, max_new_tokens, temperature):
    # eos_ids ([n] int32) / pad_id are traced: changing their values does not recompile.
    model = model_for(config)
    batch, prompt_len = prompt.shape
    # Cache shapes come from an abstract init over the full [prompt + new] length; the cache starts at zero.
    shapes = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.ones((batch, prompt_len + max_new_tokens), jnp.int32), decode=True)
    )["cache"]
    cache = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

    segment_ids, positions = default_positions(prompt, pad_id)

    embedding = lm_head_weight(config, params)
    is_eos = lambda t: jnp.any(t[:, None] == eos_ids[None, :], axis=-1)  # noqa: E731

    def forward(cache, tokens, segments, pos):
        # Features, then the LM head on the last position only: the prefill would otherwise compute
        # [batch, prompt_len, vocab] logits to keep one row of them.
        features, mutated = model.apply(
            {"params": params, "cache": cache}, tokens, decoder_segment_ids=segments, decoder_positions=pos,
            decode=True, mutable=["cache"], return_features=True,
        )
        return lm_head_logits(config, embedding, features[:, -1]), mutated["cache"]

    logits, cache = forward(cache, prompt, segment_ids, positions)
    rng, sub = jax.random.split(rng)
    first = _pick(logits, temperature, sub)
    next_position = jnp.max(positions, axis=-1) + 1  # = number of non-pad prompt tokens
    ones = jnp.ones((batch, 1), jnp.int32)

    # A while_loop, not a scan: decoding stops as soon as every row has emitted eos, so evaluation with a
    # 256-token budget pays only for the longest answer in the batch. Unwritten slots stay pad.
    out = jnp.full((batch, max_new_tokens), pad_id, jnp.int32).at[:, 0].set(first)

    def cond(carry):
        i, _, _, _, done, _, _ = carry
        return (i < max_new_tokens) & ~jnp.all(done)

    def body(carry):
        i, cache, token, position, done, rng, out = carry
        logits, cache = forward(cache, token[:, None], ones, position[:, None])
        rng, sub = jax.random.split(rng)
        nxt = jnp.where(done, pad_id, _pick(logits, temperature, sub))
        out = jax.lax.dynamic_update_slice(out, nxt[:, None], (0, i))
        return i + 1, cache, nxt, position + 1, done | is_eos(nxt), rng, out

    init = (jnp.int32(1), cache, first, next_position, is_eos(first), rng, out)
    return jax.lax.while_loop(cond, body, init)[-1]


def _token_ids(config: ModelConfig, eos_id, pad_id) -> tuple[Array, int]:
    """eos ids as an int32 vector (one id or several, e.g. Llama 3 instruct's) and the pad id, defaulting to the
    config's (a model without a pad token pads with its first eos id, as HF does). A config without an
    `eos_token_id` and no `eos_id` given is an error naming the field: where generation stops is not guessed
    (`eos_id=-1`: never stop early)."""
    if eos_id is None:
        eos_id = config.eos_token_id
    if eos_id is None:
        raise ValueError(f"{type(config).__name__} has no eos_token_id: pass eos_id (and pad_id), e.g. the "
                         "vocabulary's (optiml_jax.vocabularies.special_ids.special_ids_of), or eos_id=-1 to never "
                         "stop early")
    eos = [int(e) for e in (eos_id if isinstance(eos_id, (tuple, list)) else [eos_id])]
    if not eos:
        raise ValueError("eos_id is empty: give at least one id (-1 to never stop early)")
    if pad_id is None:
        pad_id = config.pad_token_id if config.pad_token_id is not None else eos[0]
    return jnp.asarray(eos, jnp.int32), int(pad_id)


def generate(
    config: ModelConfig,
    params: Any,
    prompt_tokens: Any,
    *,
    max_new_tokens: int,
    eos_id: int | tuple[int, ...] | None = None,
    pad_id: int | None = None,
    temperature: float = 0.0,
    rng: Array | None = None,
) -> Array:
    """Continue left-padded prompts [batch, prompt_len] -> new tokens [batch, max_new_tokens] (int32).

    Greedy at `temperature=0`; otherwise samples and needs `rng`. `params` may be boxed or not, in
    either layer layout (converted to the one `config.scan_layers` asks for). `eos_id` (one id or several)
    and `pad_id` default to the config's (a config without `eos_token_id` then raises; `eos_id=-1` never
    stops); pad tokens in the prompt are masked (segment 0).
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature > 0 and rng is None:
        raise ValueError("sampling (temperature > 0) needs an rng key")
    eos_ids, pad_id = _token_ids(config, eos_id, pad_id)
    params, prompt = _prepare(config, params, prompt_tokens, max_new_tokens)
    rng = jax.random.key(0) if rng is None else rng
    return _generate(config, params, prompt, rng, eos_ids, jnp.int32(pad_id),
                     max_new_tokens=max_new_tokens, temperature=float(temperature))


def greedy_reference(
    config: ModelConfig, params: Any, prompt_tokens: Any, *, max_new_tokens: int,
    eos_id: int | tuple[int, ...] | None = None, pad_id: int | None = None,
) -> Array:
    """Greedy decoding by a full forward pass per token (no cache): the oracle for `generate`.

    The sequence lives in a fixed [batch, prompt_len + max_new_tokens] buffer whose unfilled tail is
    padding (segment 0, so causal attention never sees it), so one compiled forward serves every step.
    """
    eos_ids, pad_id = _token_ids(config, eos_id, pad_id)
    eos_ids = [int(e) for e in eos_ids]
    params, prompt = _prepare(config, params, prompt_tokens, max_new_tokens)
    batch, prompt_len = prompt.shape
    model = model_for(config)
    # Explicit segments/positions from `pad_id` (not the config's pad token), as `generate` does.
    forward = jax.jit(lambda p, t: model.apply({"params": p}, t, *default_positions(t, pad_id)))
    buffer = jnp.concatenate([prompt, jnp.full((batch, max_new_tokens), pad_id, jnp.int32)], axis=1)
    done = jnp.zeros((batch,), bool)
    out = []
    for i in range(max_new_tokens):
        token = jnp.argmax(forward(params, buffer)[:, prompt_len + i - 1], axis=-1).astype(jnp.int32)
        out.append(jnp.where(done, pad_id, token))
        hit = jnp.isin(token, jnp.asarray(eos_ids))
        done = done | hit
        buffer = buffer.at[:, prompt_len + i].set(jnp.where(done & ~hit, pad_id, token))
    return jnp.stack(out, axis=1)
