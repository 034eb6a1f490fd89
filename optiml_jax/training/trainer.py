"""Train and eval step functions: label-only loss, microbatch gradient accumulation, non-finite guard.

`make_train_step` returns a pure `(state, batch) -> (state, metrics)`; `Trainer` jits it with the
state's and the batch's shardings under the partitioner (pjit semantics).

Microbatching: the per-token loss weights are normalised on the whole batch first (losses.py), then the
batch is split into `num_microbatches` strided slices (row r goes to microbatch r % M, so every
microbatch stays spread over all data shards) and gradients are summed in float32 with `lax.scan`.
The sum equals the full-batch gradient up to float rounding, whatever the normalisation.

Non-finite guard: when the loss or the gradient norm is not finite the step keeps the previous
parameters and optimizer state (the step counter still advances, so the data position moves past the
bad batch) and reports `nonfinite=1`. The host loop then stops the run ("stop") or carries on ("skip");
either way no non-finite state is ever written to a checkpoint.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from optiml_jax.models import ModelConfig, lm_head_weight, model_for
from optiml_jax.training.chunked_cross_entropy import chunked_cross_entropy
from optiml_jax.training.losses import normalized_token_weights, weighted_cross_entropy
from optiml_jax.training.partitioning import BATCH_AXES, Partitioner
from optiml_jax.training.train_state import TrainState

Batch = dict[str, jax.Array]


def _forward(model: nn.Module, params: Any, batch: Batch, *, deterministic: bool, rng: jax.Array | None,
             return_features: bool = False) -> jax.Array:
    rngs = None if deterministic else {"dropout": rng}
    return model.apply({"params": params}, batch["decoder_input_tokens"], batch["decoder_segment_ids"],
                       batch["decoder_positions"], deterministic=deterministic, rngs=rngs,
                       return_features=return_features)


def _split_microbatches(tree: Any, num_microbatches: int) -> Any:
    """[B, ...] -> [M, B/M, ...] with row r in microbatch r % M (strided: keeps each slice sharded)."""

    def split(x):
        b = x.shape[0]
        if b % num_microbatches:
            raise ValueError(f"batch of {b} rows is not divisible by num_microbatches={num_microbatches}")
        x = x.reshape((b // num_microbatches, num_microbatches) + x.shape[1:])
        return jnp.swapaxes(x, 0, 1)

    return jax.tree.map(split, tree)


def make_train_step(
    config: ModelConfig,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    *,
    seed: int = 0,
    num_microbatches: int = 1,
    loss_normalization: Any = "tokens",
    loss_chunk_size: int | None = None,
):
    """`loss_chunk_size`: run the LM head and cross-entropy `loss_chunk_size` positions at a time with the
    gradient formed in the same pass (`chunked_cross_entropy`), instead of materialising [B, L, vocab]
    logits; None = the plain path. Same loss and gradients up to float rounding."""
    model = model_for(config)
    deterministic = config.dropout_rate == 0.0
    if loss_chunk_size is not None and loss_chunk_size < 1:
        raise ValueError(f"loss_chunk_size={loss_chunk_size}: must be a positive number of positions or None")

    def loss_fn(params, batch, token_weights, rng):
        targets = batch["decoder_target_tokens"]
        if loss_chunk_size:
            features = _forward(model, params, batch, deterministic=deterministic, rng=rng, return_features=True)
            return chunked_cross_entropy(config, int(loss_chunk_size), features, lm_head_weight(config, params), targets,
                                         token_weights)
        logits = _forward(model, params, batch, deterministic=deterministic, rng=rng)
        return weighted_cross_entropy(logits, targets, token_weights)

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, dict]:
        token_weights = normalized_token_weights(batch, loss_normalization)
        rng = jax.random.fold_in(jax.random.key(seed), state.step)
        if num_microbatches <= 1:
            (loss, aux), grads = grad_fn(state.params, batch, token_weights, rng)
        else:
            loss, aux, grads = _accumulated_gradients(grad_fn, state.params, batch, token_weights, rng,
                                                      num_microbatches)
        grad_norm = optax.global_norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        metrics = {
            "loss": loss,
            "grad_norm": grad_norm,
            "learning_rate": schedule(state.step),
            "nonfinite": (~finite).astype(jnp.int32),
            "label_tokens": aux["label_tokens"],
            "token_accuracy": aux["correct_tokens"] / jnp.maximum(aux["label_tokens"], 1.0),
            "tokens": (jnp.asarray(batch["decoder_segment_ids"]) != 0).sum().astype(jnp.float32),
        }
        return _update_if_finite(state, tx, grads, finite), metrics

    return train_step


def _accumulated_gradients(grad_fn, params, batch: Batch, token_weights, rng, num_microbatches: int):
    """(loss, aux, float32 gradients) summed over `num_microbatches` slices of the batch, one `lax.scan` step
    each (the token weights are normalised over the whole batch, so the sums are the full batch's)."""
    micro = _split_microbatches((batch, token_weights), num_microbatches)

    def accumulate(carry, xs):
        i, (mb, w) = xs
        mb = {k: nn.with_logical_constraint(v, BATCH_AXES) for k, v in mb.items()}
        w = nn.with_logical_constraint(w, BATCH_AXES)
        (loss_i, aux_i), g_i = grad_fn(params, mb, w, jax.random.fold_in(rng, i))
        acc_loss, acc_aux, acc_g = carry
        acc_g = jax.tree.map(lambda a, g: a + g.astype(jnp.float32), acc_g, g_i)
        acc_aux = jax.tree.map(jnp.add, acc_aux, aux_i)
        return (acc_loss + loss_i, acc_aux, acc_g), None

    zeros_g = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
    zeros_aux = {"ce_sum": 0.0, "label_tokens": 0.0, "correct_tokens": 0.0}
    zeros_aux = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), zeros_aux)
    init = (jnp.zeros((), jnp.float32), zeros_aux, zeros_g)
    (loss, aux, grads), _ = jax.lax.scan(accumulate, init, (jnp.arange(num_microbatches), micro))
    return loss, aux, grads


def _update_if_finite(state: TrainState, tx: optax.GradientTransformation, grads, finite) -> TrainState:
    """The optimizer step, kept only when the loss and gradient norm are finite (else the state is unchanged but
    the step counter: ON_NONFINITE='skip' decides in the loop whether to go on)."""
    updates, new_opt_state = tx.update(grads, state.opt_state, state.params)
    new_params = optax.apply_updates(state.params, updates)
    keep = lambda new, old: jnp.where(finite, new, old)  # noqa: E731
    return TrainState(
        step=state.step + 1,
        params=jax.tree.map(keep, new_params, state.params),
        opt_state=jax.tree.map(keep, new_opt_state, state.opt_state),
    )


def make_eval_step(config: ModelConfig):
    """(params, batch) -> {"ce_sum", "label_tokens", "correct_tokens"}: summed so splits aggregate exactly."""
    model = model_for(config)

    def eval_step(params, batch):
        logits = _forward(model, params, batch, deterministic=True, rng=None)
        weights = jnp.asarray(batch["decoder_loss_weights"], jnp.float32)
        _, aux = weighted_cross_entropy(logits, batch["decoder_target_tokens"], weights)
        return aux

    return eval_step


@dataclasses.dataclass
class Trainer:
    """The jitted, sharded train/eval steps for one (config, optimizer, partitioner)."""

    config: ModelConfig
    tx: optax.GradientTransformation
    schedule: optax.Schedule
    partitioner: Partitioner
    state_shardings: Any
    seed: int = 0
    num_microbatches: int = 1
    loss_normalization: Any = "tokens"
    loss_chunk_size: int | None = None

    def __post_init__(self):
        p = self.partitioner
        batch_sh = p.batch_sharding
        step = make_train_step(self.config, self.tx, self.schedule, seed=self.seed,
                               num_microbatches=self.num_microbatches, loss_normalization=self.loss_normalization,
                               loss_chunk_size=self.loss_chunk_size)
        self.train_step = p.jit(step, in_shardings=(self.state_shardings, batch_sh),
                                out_shardings=(self.state_shardings, p.replicated), donate_argnums=(0,))
        self.eval_step = p.jit(make_eval_step(self.config), in_shardings=(self.state_shardings.params, batch_sh),
                               out_shardings=p.replicated)

    def global_batch(self, local_batch: dict, global_batch_size: int) -> Batch:
        """This process's rows -> one global jax.Array per feature, sharded like the batch."""
        sharding = self.partitioner.batch_sharding
        out = {}
        for k, v in local_batch.items():
            shape = (global_batch_size,) + tuple(v.shape[1:])
            out[k] = jax.make_array_from_process_local_data(sharding, v, shape)
        return out


def process_batch_slice(partitioner: Partitioner, global_batch_size: int, length: int) -> tuple[int, int]:
    """(shard_index, num_shards) of the rows this process must feed, read off the batch sharding."""
    sharding = partitioner.batch_sharding
    index_map = sharding.addressable_devices_indices_map((global_batch_size, length))
    starts = {idx[0].start or 0 for idx in index_map.values()}
    stops = {global_batch_size if idx[0].stop is None else idx[0].stop for idx in index_map.values()}
    start, stop = min(starts), max(stops)
    rows = stop - start
    if global_batch_size % rows or start % rows:
        raise ValueError(f"process {jax.process_index()} holds rows [{start}, {stop}) of {global_batch_size}: "
                         "not an even shard; choose a mesh whose batch axes split evenly over processes")
    return start // rows, global_batch_size // rows
