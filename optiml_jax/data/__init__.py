"""The data path: instruction formatting, demonstrations, mixing rates, packing, the training stream.

Public API (see docs/ARCHITECTURE.md for the batch contract):
    get_train_stream(mixture_or_task_name, task_feature_lengths, batch_size, seed, shard_index, num_shards, ...)
        -> TrainStream; stream.get_batch(step) -> dict of [batch_size // num_shards, length] numpy arrays
    get_eval_batches(task_name, task_feature_lengths, batch_size, split, shard_index, num_shards, ...) -> [batch]
    format_few_shot(task_info, example, demonstrations, k, max_source_tokens, ...) -> (source, target)
"""

from optiml_jax.tasks.formatting import DELIMITERS, BrokenExampleError, draw_delimiter, format_few_shot, layout
from optiml_jax.data.demonstrations import MetaICLConfig, zipf_shot_probabilities
from optiml_jax.tasks.recipe import MixtureRates, MixtureRecipe, compute_rates
from optiml_jax.data.tokenization import encode_target, tokenize_pieces
from optiml_jax.data.packing import FEATURES, efficiency, pack
from optiml_jax.data.stream import StepStats, TrainStream, get_train_stream, sequence_length
from optiml_jax.data.eval_batches import get_eval_batches, get_eval_batches_per_task
from optiml_jax.data.eval_stream import EvalBatchStream, eval_mixture_stream

__all__ = [
    "DELIMITERS", "BrokenExampleError", "draw_delimiter", "format_few_shot", "layout", "MetaICLConfig",
    "zipf_shot_probabilities", "MixtureRates", "MixtureRecipe", "compute_rates", "encode_target",
    "tokenize_pieces", "FEATURES", "efficiency", "pack", "StepStats", "TrainStream", "get_train_stream",
    "sequence_length", "get_eval_batches", "get_eval_batches_per_task", "EvalBatchStream", "eval_mixture_stream",
]
