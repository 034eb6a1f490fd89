"""Fixtures for the trainer tests: a tiny config factory, partitioners on device subsets, fast train() kwargs."""

import jax
import numpy as np
import pytest

from optiml_jax.training.synthetic_data import synthetic_stream

from optiml_jax.training.model_config import opt_config
from optiml_jax.training.partitioning import Partitioner, make_mesh, standard_rules

LENGTH = 32
VOCAB = 512


def _tiny_config(**overrides):
    kw = dict(vocab_size=VOCAB, dtype="float32", dropout_rate=0.0)
    kw.update(overrides)
    return opt_config("tiny", **kw)


def _partitioner(mesh_shape=(1, 1, 1), rules="data_parallel"):
    n = int(np.prod([s for s in mesh_shape if s > 0]))
    return Partitioner(make_mesh(mesh_shape, jax.devices()[:n]), standard_rules(rules))


@pytest.fixture
def tiny_config():
    return _tiny_config


@pytest.fixture
def make_part():
    return _partitioner


@pytest.fixture
def train_kwargs(tmp_path):
    """Keyword arguments for `train()`: a fast tiny run on one device (override what a test varies)."""
    return dict(model_dir=str(tmp_path / "run"), mixture_or_task_name="synthetic", stream_factory=synthetic_stream,
                task_feature_lengths={"targets": LENGTH}, train_steps=4, batch_size=4, model_config=_tiny_config(),
                partitioner=_partitioner(), learning_rate=1e-3, warmup_steps=1, checkpoint_period=2, progress=False,
                peak_flops=1e11)
