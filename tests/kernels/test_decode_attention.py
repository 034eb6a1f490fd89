"""The KV-cache attention (heads-major caches) against the reference backend, the numerical source of truth."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optiml_jax.kernels import reference_attention
from optiml_jax.kernels.decode_attention import cached_attention, to_cache_layout


@pytest.mark.parametrize("q_len,offset", [(1, 9), (1, 0), (4, 5)])
def test_cached_attention_matches_reference(q_len, offset):
    batch, cache_len, heads, head_dim = 3, 16, 3, 8
    keys = jax.random.split(jax.random.key(0), 3)
    q = jax.random.normal(keys[0], (batch, q_len, heads, head_dim))
    k = jax.random.normal(keys[1], (batch, cache_len, heads, head_dim))
    v = jax.random.normal(keys[2], (batch, cache_len, heads, head_dim))
    # Row 0: left padding then one segment; row 1: nothing written past the queries (segment 0 tail);
    # row 2: every cached key is padding, so its queries must output zeros.
    kv_seg = np.ones((batch, cache_len), np.int32)
    kv_seg[0, :3] = 0
    kv_seg[1, offset + q_len:] = 0
    kv_seg[2, :] = 0
    q_seg = np.ones((batch, q_len), np.int32)
    q_seg[2, :] = 0
    got = cached_attention(q, to_cache_layout(k), to_cache_layout(v), jnp.asarray(q_seg), jnp.asarray(kv_seg),
                           query_offset=offset)
    want = reference_attention(q, k, v, jnp.asarray(q_seg), kv_segment_ids=jnp.asarray(kv_seg),
                               query_offset=offset)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-6, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(got[2]), 0.0)


def test_cached_attention_never_reads_future_slots():
    """Keys after the query's slot (written by a later step, or garbage) must not change the output."""
    batch, cache_len, heads, head_dim, offset = 2, 12, 2, 4, 5
    q = jax.random.normal(jax.random.key(1), (batch, 1, heads, head_dim))
    k = jax.random.normal(jax.random.key(2), (batch, heads, cache_len, head_dim))
    v = jax.random.normal(jax.random.key(3), (batch, heads, cache_len, head_dim))
    seg = jnp.ones((batch, cache_len), jnp.int32)
    base = cached_attention(q, k, v, jnp.ones((batch, 1), jnp.int32), seg, query_offset=offset)
    k2 = k.at[:, :, offset + 1:].set(1e3)
    v2 = v.at[:, :, offset + 1:].set(-1e3)
    again = cached_attention(q, k2, v2, jnp.ones((batch, 1), jnp.int32), seg, query_offset=offset)
    np.testing.assert_array_equal(np.asarray(base), np.asarray(again))
