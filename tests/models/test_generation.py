"""KV-cache generation (`optiml_jax.models.generate`) against full-forward greedy decoding."""

import jax
import numpy as np
import pytest
from test_opt_execution import SMALL, random_params

from optiml_jax.models import OPTConfig, generate, greedy_reference, stack_layers

# The prompts are left-padded with 1 (`left_padded_prompt`), so the configs say pad 1: OPTConfig has no default ids.
IDS = dict(pad_token_id=1, bos_token_id=2, eos_token_id=2)


def left_padded_prompt(vocab_size, lengths, total, seed=0):
    rng = np.random.default_rng(seed)
    tokens = np.ones((len(lengths), total), np.int32)
    for i, n in enumerate(lengths):
        tokens[i, total - n:] = rng.integers(3, vocab_size, n)
    return tokens


@pytest.mark.parametrize("overrides", [{}, {"word_embed_proj_dim": 32, "do_layer_norm_before": False, "scan_layers": True}])
def test_cached_greedy_equals_full_forward_greedy(overrides):
    config = OPTConfig(**SMALL, **IDS, **overrides)
    params = random_params(config.replace(scan_layers=False))
    prompt = left_padded_prompt(config.vocab_size, [7, 3, 5], 7)
    # eos_id=-1 never fires, so every row runs all 16 steps through the cache.
    expected = np.asarray(greedy_reference(config, params, prompt, max_new_tokens=16, eos_id=-1))
    got = np.asarray(generate(config, params, prompt, max_new_tokens=16, eos_id=-1))
    assert got.shape == (3, 16) and got.dtype == np.int32
    np.testing.assert_array_equal(got, expected)
    assert len(np.unique(got)) > 3  # a degenerate constant output would prove little
    if config.scan_layers:  # stacked params are accepted as well
        np.testing.assert_array_equal(np.asarray(generate(config, stack_layers(params), prompt, max_new_tokens=16,
                                                          eos_id=-1)), expected)


def test_rows_that_emit_eos_emit_pad_afterwards():
    config = OPTConfig(**SMALL, **IDS)
    params = random_params(config)
    prompt = left_padded_prompt(config.vocab_size, [6, 4], 6, seed=3)
    free = np.asarray(generate(config, params, prompt, max_new_tokens=12, eos_id=-1))
    eos = int(free[0, 4])  # a token row 0 really produces, at step 4 or earlier
    got = np.asarray(generate(config, params, prompt, max_new_tokens=12, eos_id=eos, pad_id=1))
    for row_free, row in zip(free, got):
        hits = np.flatnonzero(row_free == eos)
        stop = hits[0] + 1 if len(hits) else len(row_free)
        np.testing.assert_array_equal(row[:stop], row_free[:stop])  # up to and including eos
        assert (row[stop:] == 1).all()
    assert (got[0] == 1).any()
    np.testing.assert_array_equal(
        got, np.asarray(greedy_reference(config, params, prompt, max_new_tokens=12, eos_id=eos, pad_id=1))
    )


def test_sampling_is_reproducible_and_key_dependent():
    config = OPTConfig(**SMALL, **IDS)
    params = random_params(config)
    prompt = left_padded_prompt(config.vocab_size, [5, 5], 5, seed=4)
    a = np.asarray(generate(config, params, prompt, max_new_tokens=10, temperature=1.0, rng=jax.random.key(1), eos_id=-1))
    b = np.asarray(generate(config, params, prompt, max_new_tokens=10, temperature=1.0, rng=jax.random.key(1), eos_id=-1))
    c = np.asarray(generate(config, params, prompt, max_new_tokens=10, temperature=1.0, rng=jax.random.key(2), eos_id=-1))
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()
    assert ((a >= 0) & (a < config.vocab_size)).all()


def test_bad_generation_arguments_are_rejected():
    config = OPTConfig(**SMALL, **IDS)
    params = {"decoder": {}}  # arguments are checked before parameters are touched
    prompt = left_padded_prompt(config.vocab_size, [4], 4)
    with pytest.raises(ValueError, match="rng"):
        generate(config, params, prompt, max_new_tokens=3, temperature=0.7)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        generate(config, params, prompt, max_new_tokens=config.max_position_embeddings)
    with pytest.raises(ValueError, match=r"\[batch, length\]"):
        generate(config, params, prompt[0], max_new_tokens=3)


def test_a_config_without_ids_does_not_guess_where_generation_stops():
    """OPTConfig has no default special ids: generating without a vocabulary's ids (eos_id) fails naming the missing
    field, before any parameter is touched; given the ids, it runs, padding with the given pad id."""
    config = OPTConfig(**SMALL)
    assert (config.pad_token_id, config.bos_token_id, config.eos_token_id) == (None, None, None)
    prompt = left_padded_prompt(config.vocab_size, [4, 2], 4)
    for fn in (generate, greedy_reference):
        with pytest.raises(ValueError, match="OPTConfig has no eos_token_id"):
            fn(config, {"decoder": {}}, prompt, max_new_tokens=3)
    params = random_params(config)
    free = np.asarray(generate(config, params, prompt, max_new_tokens=6, eos_id=-1, pad_id=1))
    eos = int(free[0, 1])
    got = np.asarray(generate(config, params, prompt, max_new_tokens=6, eos_id=eos, pad_id=1))
    with_ids = np.asarray(generate(config.replace(**{**IDS, "eos_token_id": eos}), params, prompt, max_new_tokens=6))
    np.testing.assert_array_equal(got, with_ids)  # the config's ids, once it has them, act as the given ones
    stop = int(np.flatnonzero(free[0] == eos)[0]) + 1  # row 0 stops at its first eos, then pads
    np.testing.assert_array_equal(got[0, :stop], free[0, :stop])
    assert stop < 6 and (got[0, stop:] == 1).all()
