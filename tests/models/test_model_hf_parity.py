"""Numerical parity with Hugging Face's PyTorch OPTForCausalLM on the same (random) weights."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hf_peers import left_padded_batch

from optiml_jax.models import OPT, generate

torch = pytest.importorskip("torch")


def hf_logits(model, tokens):
    with torch.no_grad():
        out = model(input_ids=torch.from_numpy(tokens), attention_mask=torch.from_numpy((tokens != 1).astype(np.int64)))
    return out.logits.numpy()


def test_logits_match_hf_on_left_padded_batch(hf_pair):
    _, config, model, params = hf_pair
    tokens = left_padded_batch(config.vocab_size, [12, 9, 5], 12)
    ours = np.asarray(OPT(config).apply({"params": params}, jnp.asarray(tokens, jnp.int32)))
    theirs = hf_logits(model, tokens)
    real = tokens != 1
    assert ours.shape == theirs.shape == (3, 12, config.vocab_size)
    diff = np.abs(ours[real] - theirs[real]).max()
    assert diff <= 1e-4, diff
    # The comparison is not vacuous: logits vary across positions and are far from zero.
    assert np.abs(theirs[real]).max() > 0.1


def test_loss_matches_hf_labels_loss(hf_pair):
    _, config, model, params = hf_pair
    tokens = left_padded_batch(config.vocab_size, [10, 7], 10, seed=1)
    real = tokens != 1
    # A token is a label when it and its predecessor are real (the first real token has no real context).
    label_mask = np.zeros_like(real)
    label_mask[:, 1:] = real[:, 1:] & real[:, :-1]
    labels = np.where(label_mask, tokens, -100)
    with torch.no_grad():
        hf_loss = model(input_ids=torch.from_numpy(tokens), attention_mask=torch.from_numpy(real.astype(np.int64)),
                        labels=torch.from_numpy(labels)).loss.item()
    logits = OPT(config).apply({"params": params}, jnp.asarray(tokens, jnp.int32))
    per_token = optax.softmax_cross_entropy_with_integer_labels(logits[:, :-1], jnp.asarray(tokens[:, 1:], jnp.int32))
    weights = jnp.asarray(label_mask[:, 1:], jnp.float32)
    ours = float(jnp.sum(per_token * weights) / jnp.sum(weights))
    assert abs(ours - hf_loss) <= 1e-5 * max(1.0, abs(hf_loss)), (ours, hf_loss)


def test_greedy_generation_matches_hf_generate(hf_pair):
    _, config, model, params = hf_pair
    prompt = left_padded_batch(config.vocab_size, [6, 4, 2], 6, seed=2)
    new = 20
    with torch.no_grad():
        out = model.generate(
            input_ids=torch.from_numpy(prompt), attention_mask=torch.from_numpy((prompt != 1).astype(np.int64)),
            do_sample=False, max_new_tokens=new, min_new_tokens=0, pad_token_id=1, eos_token_id=2,
        ).numpy()[:, prompt.shape[1]:]
    # HF stops early when every row has finished; the missing columns are padding.
    theirs = np.pad(out, ((0, 0), (0, new - out.shape[1])), constant_values=1)
    ours = np.asarray(generate(config, params, prompt, max_new_tokens=new, eos_id=2, pad_id=1))
    np.testing.assert_array_equal(ours, theirs)
