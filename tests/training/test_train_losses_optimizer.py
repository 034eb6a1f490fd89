"""Loss normalisations, the OPT-IML schedule/optimizer recipe, and microbatch accumulation."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optiml_jax.training import losses, optimizer, train_state, trainer
from optiml_jax.training.synthetic_data import SyntheticStream


def _batch():
    # Two rows; row 0 packs segments 1 (2 label tokens) and 2 (1 label token); row 1 has segment 1 (3 labels).
    w = np.array([[0, 1, 1, 0, 1, 0], [0, 0, 1, 1, 1, 0]], np.float32)
    seg = np.array([[1, 1, 1, 2, 2, 0], [1, 1, 1, 1, 1, 0]], np.int32)
    return {"decoder_loss_weights": w, "decoder_segment_ids": seg}


@pytest.mark.parametrize("mode,expected", [
    ("tokens", [[0, 1 / 6, 1 / 6, 0, 1 / 6, 0], [0, 0, 1 / 6, 1 / 6, 1 / 6, 0]]),
    ("sequences", [[0, 1 / 6, 1 / 6, 0, 1 / 6, 0], [0, 0, 1 / 6, 1 / 6, 1 / 6, 0]]),
    ("segments", [[0, 1 / 6, 1 / 6, 0, 1 / 3, 0], [0, 0, 1 / 9, 1 / 9, 1 / 9, 0]]),
    (4.0, [[0, .25, .25, 0, .25, 0], [0, 0, .25, .25, .25, 0]]),
])
def test_normalized_token_weights(mode, expected):
    got = np.asarray(losses.normalized_token_weights(_batch(), mode))
    np.testing.assert_allclose(got, np.array(expected), rtol=1e-6)


def test_sequence_normalisation_differs_from_tokens_when_rows_differ():
    b = _batch()
    b["decoder_loss_weights"][1] = [0, 0, 0, 0, 1, 0]  # row 1: one label token
    seq = np.asarray(losses.normalized_token_weights(b, "sequences"))
    np.testing.assert_allclose(seq[0, 1], 1 / 6)  # row 0: 1/3 per token, halved over 2 rows
    np.testing.assert_allclose(seq[1, 4], 1 / 2)


def test_bad_normalisation_is_rejected():
    with pytest.raises(ValueError, match="loss_normalization"):
        losses.normalized_token_weights(_batch(), "per_word")


def test_cross_entropy_uses_label_tokens_only():
    logits = jax.random.normal(jax.random.key(0), (1, 4, 7))
    targets = jnp.array([[1, 2, 3, 4]])
    w = jnp.array([[0.0, 1.0, 0.0, 1.0]])
    loss, _ = losses.weighted_cross_entropy(logits, targets, w / 2)
    logp = jax.nn.log_softmax(logits[0])
    expected = -(logp[1, 2] + logp[3, 4]) / 2
    np.testing.assert_allclose(loss, expected, rtol=1e-6)


def test_schedule_is_paper_recipe():
    s = optimizer.make_schedule(5e-5, 60, 4000, "linear")
    np.testing.assert_allclose([s(0), s(30), s(60), s(2030), s(4000)], [0, 2.5e-5, 5e-5, 2.5e-5, 0], atol=1e-12)


def test_adam_step_matches_hand_computation():
    """One update with b1=0.9, b2=0.95, eps=1e-8, decoupled wd on matrices only, clipping at 1.0."""
    lr, wd = 1e-2, 0.1
    tx = optimizer.make_optimizer(optax.constant_schedule(lr), weight_decay=wd, clip_grad_norm=1.0)
    params = {"w": jnp.ones((2, 2)), "b": jnp.ones((2,))}
    grads = {"w": jnp.full((2, 2), 3.0), "b": jnp.full((2,), 4.0)}  # global norm 10 -> scaled by 1/10
    state = tx.init(params)
    assert jax.tree.leaves(state)[1].dtype == jnp.float32
    updates, _ = tx.update(grads, state, params)
    for name, g in (("w", 0.3), ("b", 0.4)):
        m, v = 0.1 * g / (1 - 0.9), 0.05 * g * g / (1 - 0.95)
        expected = -lr * (m / (np.sqrt(v) + 1e-8) + (wd if name == "w" else 0.0) * 1.0)
        np.testing.assert_allclose(np.asarray(updates[name]), expected, rtol=1e-5)


# Adam's first step moves every parameter by about lr * sign(g) = 1e-3, except where |g| is near eps (1e-8):
# there the float rounding of g shows in the update. 1e-5 = 1% of one step's move.
ADAM_FIRST_STEP_ATOL = 1e-5


def _one_step(config, part, num_microbatches, normalization, loss_chunk_size=None):
    sched = optimizer.make_schedule(1e-3, 0, 10)
    tx = optimizer.make_optimizer(sched, weight_decay=0.01)
    sh = train_state.state_shardings(config, tx, part)
    state = train_state.init_state(config, tx, part, seed=0)
    initial = jax.device_get(state.params)
    tr = trainer.Trainer(config, tx, sched, part, sh, num_microbatches=num_microbatches,
                         loss_normalization=normalization, loss_chunk_size=loss_chunk_size)
    batch = tr.global_batch(SyntheticStream(8, 32, vocab_size=512).get_batch(0), 8)
    state, m = tr.train_step(state, batch)
    return float(m["loss"]), float(m["grad_norm"]), jax.device_get(state.params), initial


def test_microbatch_accumulation_equals_full_batch(tiny_config, make_part, normalization="segments"):
    config, part = tiny_config(), make_part((1, 1, 1))
    full = _one_step(config, part, 1, normalization)
    accum = _one_step(config, part, 4, normalization)
    np.testing.assert_allclose(accum[0], full[0], rtol=1e-5)
    np.testing.assert_allclose(accum[1], full[1], rtol=1e-4)
    moved = max(float(np.abs(a - b).max()) for a, b in zip(jax.tree.leaves(full[2]), jax.tree.leaves(full[3])))
    assert moved > 1e-4  # the step really changed the parameters
    for a, b in zip(jax.tree.leaves(accum[2]), jax.tree.leaves(full[2])):
        np.testing.assert_allclose(a, b, atol=ADAM_FIRST_STEP_ATOL)


@pytest.mark.parametrize("mesh_shape,rules", [((1, 1, 1), "data_parallel"), ((2, 1, 4), "tensor")])
def test_chunked_loss_step_equals_plain_step(tiny_config, make_part, mesh_shape, rules):
    """LOSS_CHUNK_SIZE: same loss, grad norm and updated parameters (tied embedding included) as plain logits,
    also with the batch split over data and the vocabulary/heads over tensor (8 devices)."""
    config = tiny_config(dropout_rate=0.1)
    plain = _one_step(config, make_part((1, 1, 1)), 1, "tokens")
    chunked = _one_step(config, make_part(mesh_shape, rules), 1, "tokens", loss_chunk_size=12)  # 32 = 12+12+8
    np.testing.assert_allclose(chunked[0], plain[0], rtol=1e-5)
    np.testing.assert_allclose(chunked[1], plain[1], rtol=1e-4)
    flat_plain = jax.tree_util.tree_leaves_with_path(plain[2])
    for (path, a), b in zip(flat_plain, jax.tree.leaves(chunked[2])):
        np.testing.assert_allclose(b, a, atol=ADAM_FIRST_STEP_ATOL, err_msg=jax.tree_util.keystr(path))


def test_chunked_loss_with_microbatches_and_bfloat16(tiny_config, make_part):
    """LOSS_CHUNK_SIZE composes with gradient accumulation and the bfloat16 compute policy."""
    config = tiny_config(dtype="bfloat16")
    part = make_part((1, 1, 1))
    plain = _one_step(config, part, 2, "tokens")
    chunked = _one_step(config, part, 2, "tokens", loss_chunk_size=16)
    np.testing.assert_allclose(chunked[0], plain[0], rtol=1e-4)  # measured: equal loss, grad norm within 5e-7
    np.testing.assert_allclose(chunked[1], plain[1], rtol=1e-3)
    with pytest.raises(ValueError, match="loss_chunk_size=0"):
        trainer.make_train_step(config, optax.sgd(0.1), optax.constant_schedule(0.1), loss_chunk_size=0)
