"""A synthetic, step-indexed training stream with the real stream's batch contract.

Why it exists: the trainer, its tests and its benchmarks need packed, label-masked batches without
TensorFlow/SeqIO or a registered mixture. It honours docs/ARCHITECTURE.md "Batch contract":
`get_batch(step)` returns this shard's rows of the global batch for `step` as a dict of numpy arrays
`decoder_input_tokens`, `decoder_target_tokens`, `decoder_loss_weights`, `decoder_segment_ids`,
`decoder_positions`, a pure function of (seed, step, row). Shards of any count therefore tile the
same global batch, which is what the multi-process and exact-resume tests rely on.

Each packed example is "source tokens, then target tokens, then eos", with loss weight 1 on the
target tokens and eos only. The target is a learnable function of the source (the source's tokens
shifted by one, reversed), so a tiny model's loss falls visibly within a few hundred steps.

Special ids: random tokens have no tokenizer, so the stream's id layout is its own (`SYNTHETIC_*_ID`: pad 0,
bos 1, eos 2, content from 4), not any model family's. The stream reports it as `special_ids`, the attribute a
vocabulary-backed stream has, so the trainer stamps these ids into the model config it writes
(`optiml_jax.training.model_config.with_vocabulary_ids`): model_config.json and the in-training evaluation
then use the ids the rows were built with, whatever model is trained.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from optiml_jax.vocabularies.special_ids import SpecialIds

# The stream's own id layout (id 3 unused), no family's: see the module docstring.
SYNTHETIC_PAD_ID = 0
SYNTHETIC_BOS_ID = 1
SYNTHETIC_EOS_ID = 2
FIRST_CONTENT_ID = 4
SYNTHETIC_NAME = "synthetic"  # the only MIXTURE_OR_TASK_NAME this stream accepts: it reads no task
FEATURES = ("decoder_input_tokens", "decoder_target_tokens", "decoder_loss_weights",
            "decoder_segment_ids", "decoder_positions")


@dataclasses.dataclass
class SyntheticStream:
    """Step-indexed stream: `get_batch(step)` -> this shard's `[batch_size // num_shards, length]` rows."""

    batch_size: int  # global batch (sequences)
    sequence_length: int
    vocab_size: int = 512
    seed: int = 0
    shard_index: int = 0
    num_shards: int = 1
    min_source_length: int = 3
    max_source_length: int = 12
    content_vocab: int = 64  # tokens drawn from [4, 4 + content_vocab): small enough to be learnable

    def __post_init__(self):
        if self.batch_size % self.num_shards:
            raise ValueError(f"global batch_size={self.batch_size} is not divisible by num_shards={self.num_shards}")
        if not 0 <= self.shard_index < self.num_shards:
            raise ValueError(f"shard_index={self.shard_index} outside [0, {self.num_shards})")
        if FIRST_CONTENT_ID + self.content_vocab + 1 > self.vocab_size:
            raise ValueError(f"vocab_size={self.vocab_size} too small for content_vocab={self.content_vocab}")
        if self.sequence_length < 2 * self.min_source_length + 1:
            raise ValueError(f"sequence_length={self.sequence_length} too short for one example")

    @property
    def special_ids(self) -> SpecialIds:
        """The ids the rows use (the stream's own, see the module docstring), with the stream's vocab_size."""
        return SpecialIds(SYNTHETIC_BOS_ID, (SYNTHETIC_EOS_ID,), SYNTHETIC_PAD_ID, self.vocab_size)

    @property
    def rows_per_shard(self) -> int:
        return self.batch_size // self.num_shards

    def state(self) -> dict:
        """What a checkpoint must store to resume: everything besides the step is in the config."""
        return {"seed": self.seed, "batch_size": self.batch_size, "sequence_length": self.sequence_length}

    def _row(self, step: int, row: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, step, row])
        length = self.sequence_length
        feats = {
            "decoder_input_tokens": np.full(length, SYNTHETIC_PAD_ID, np.int32),
            "decoder_target_tokens": np.full(length, SYNTHETIC_PAD_ID, np.int32),
            "decoder_loss_weights": np.zeros(length, np.float32),
            "decoder_segment_ids": np.zeros(length, np.int32),
            "decoder_positions": np.zeros(length, np.int32),
        }
        pos, segment = 0, 1
        while True:
            n = int(rng.integers(self.min_source_length, self.max_source_length + 1))
            example_len = 2 * n + 1
            if pos + example_len > length:
                break
            source = rng.integers(FIRST_CONTENT_ID, FIRST_CONTENT_ID + self.content_vocab, n)
            target = (source[::-1] - FIRST_CONTENT_ID + 1) % self.content_vocab + FIRST_CONTENT_ID
            targets = np.concatenate([source, target, [SYNTHETIC_EOS_ID]]).astype(np.int32)
            sl = slice(pos, pos + example_len)
            feats["decoder_target_tokens"][sl] = targets
            feats["decoder_input_tokens"][sl] = np.concatenate([[SYNTHETIC_BOS_ID], targets[:-1]])
            feats["decoder_loss_weights"][pos + n: pos + example_len] = 1.0
            feats["decoder_segment_ids"][sl] = segment
            feats["decoder_positions"][sl] = np.arange(example_len)
            pos += example_len
            segment += 1
        return feats

    def get_batch(self, step: int) -> dict[str, np.ndarray]:
        start = self.shard_index * self.rows_per_shard
        rows = [self._row(int(step), start + r) for r in range(self.rows_per_shard)]
        return {k: np.stack([r[k] for r in rows]) for k in FEATURES}

    def describe(self) -> dict:
        """For the run's first log lines and MODEL_DIR/run.json: random tokens, said plainly."""
        return {"source": "synthetic", "mixture_or_task_name": SYNTHETIC_NAME, "seed": self.seed,
                "tokenizer": None, "vocab_size": self.vocab_size, "tasks_read": {},
                "note": "random tokens from optiml_jax.training.synthetic_data (gin/runs/smoke_synthetic.gin), no task"}

    def get_global_batch(self, step: int) -> dict[str, np.ndarray]:
        """All shards' rows (for tests comparing against a single-host run)."""
        rows = [self._row(int(step), r) for r in range(self.batch_size)]
        return {k: np.stack([r[k] for r in rows]) for k in FEATURES}


def synthetic_stream(
    *,
    mixture_or_task_name: str,
    task_feature_lengths: dict,
    batch_size: int,
    seed: int,
    shard_index: int,
    num_shards: int,
    vocab_size: int = 512,
    **kwargs,
) -> SyntheticStream:
    """The trainer's stream-factory signature (see `optiml_jax.training.run_config.DataConfig.stream_factory`).

    Only through an explicit `DataConfig.stream_factory = @synthetic_stream` (gin/runs/smoke_synthetic.gin), with
    MIXTURE_OR_TASK_NAME = 'synthetic': any other name would be a mixture the run silently does not train on.
    The sequence length is the sum of the task
    feature lengths (decoder-only: inputs + targets packed into one row), as SeqIO's converter does.
    """
    if mixture_or_task_name != SYNTHETIC_NAME:
        raise ValueError(f"MIXTURE_OR_TASK_NAME = {mixture_or_task_name!r}, but DataConfig.stream_factory = "
                         "@synthetic_stream trains on random tokens and reads no task: set MIXTURE_OR_TASK_NAME = "
                         f"{SYNTHETIC_NAME!r} for a smoke run, or drop gin/runs/smoke_synthetic.gin to train on the "
                         "mixture")
    length = int(sum(task_feature_lengths.values()))
    return SyntheticStream(batch_size=batch_size, sequence_length=length, vocab_size=vocab_size, seed=seed,
                           shard_index=shard_index, num_shards=num_shards, **kwargs)
