"""Resume-aware metrics (one record per step in train.jsonl, eval_*.jsonl and the TensorBoard events after a
restart) and the ON_NONFINITE='skip' cap. The crash is real: the process's stream raises mid-run after a
checkpoint and after more steps were logged, and the same run is started again."""

import json
import math
import pathlib

import numpy as np
import pytest

from optiml_jax.testing.train_configs import train_configs
from optiml_jax.training.errors import NonFiniteError
from optiml_jax.training.metrics import MetricsLogger, _TensorBoardWriter, read_scalar_events
from optiml_jax.training.synthetic_data import SyntheticStream, synthetic_stream
from optiml_jax.training.train_loop import train


def _jsonl_steps(path: pathlib.Path) -> list[int]:
    return [json.loads(x)["step"] for x in path.read_text().splitlines() if x.strip()]


def _tb_steps(logdir: pathlib.Path, tag: str) -> list[int]:
    return sorted(step for step, t, _ in read_scalar_events(logdir) if t == tag)


def test_logger_cuts_files_back_to_the_restored_step(tmp_path):
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    (metrics / "train.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1.0 / (s + 1), "nonfinite": int(s == 1)})
                                                 + "\n" for s in range(6)) + '{"step": 6, "lo')  # torn last line
    (metrics / "eval_x.jsonl").write_text("".join(json.dumps({"step": s, "loss": 0.5}) + "\n" for s in (2, 4, 6)))
    for split, steps in (("train", range(6)), ("eval_x", (2, 4, 6))):
        w = _TensorBoardWriter(metrics / "tensorboard" / split)
        for s in steps:
            w.scalars(s, {"loss": 1.0})
        w.close()
    logger = MetricsLogger(tmp_path, start_step=4, total_steps=8, progress=False)
    assert logger.prior_nonfinite == 1
    for s in range(4, 8):
        logger.log(s, {"loss": 0.1})
    logger.log(4, {"loss": 0.5}, split="eval_x")  # the eval of step 4 was logged before the restart: not again
    logger.log(6, {"loss": 0.5}, split="eval_x")
    logger.log(8, {"loss": 0.5}, split="eval_x")
    logger.close()
    assert _jsonl_steps(metrics / "train.jsonl") == list(range(8))
    assert _jsonl_steps(metrics / "eval_x.jsonl") == [2, 4, 6, 8]
    assert _tb_steps(metrics / "tensorboard" / "train", "loss") == list(range(8))
    assert _tb_steps(metrics / "tensorboard" / "eval_x", "loss") == [2, 4, 6, 8]


class _CrashingStream(SyntheticStream):
    """A synthetic stream whose process dies (raises) when asked for `crash_at`'s batch."""

    crash_at: int | None = None

    def get_batch(self, step):
        if step == _CrashingStream.crash_at:
            raise KeyboardInterrupt(f"simulated crash at step {step}")
        return super().get_batch(step)


def _crashing(**kw):
    s = synthetic_stream(**kw)
    return _CrashingStream(**{f: getattr(s, f) for f in ("batch_size", "sequence_length", "vocab_size", "seed",
                                                         "shard_index", "num_shards")})


def test_resumed_run_logs_each_step_once_in_jsonl_eval_and_tensorboard(train_kwargs):
    run = pathlib.Path(train_kwargs["model_dir"])
    kwargs = {**train_kwargs, "train_steps": 6, "checkpoint_period": 3, "log_period": 1, "eval_period": 2,
              "eval_streams": {"x": synthetic_stream}, "stream_factory": _crashing}
    _CrashingStream.crash_at = 5  # after the checkpoint of step 3, with steps 3 (train) and 4 (eval) logged
    try:
        with pytest.raises(KeyboardInterrupt):
            train(**train_configs(**kwargs))
    finally:
        _CrashingStream.crash_at = None
    metrics = run / "metrics"
    assert _jsonl_steps(metrics / "train.jsonl") == [0, 1, 2, 3] and _jsonl_steps(metrics / "eval_x.jsonl") == [2, 4]
    result = train(**train_configs(**kwargs))
    assert result.restored_from == 3
    assert _jsonl_steps(metrics / "train.jsonl") == list(range(6))
    assert _jsonl_steps(metrics / "eval_x.jsonl") == [2, 4, 6]
    assert _tb_steps(metrics / "tensorboard" / "train", "loss") == list(range(6))
    assert _tb_steps(metrics / "tensorboard" / "eval_x", "loss") == [2, 4, 6]
    # TensorBoard and train.jsonl hold the same values.
    tb = {s: v for s, t, v in read_scalar_events(metrics / "tensorboard" / "train") if t == "loss"}
    jl = {json.loads(x)["step"]: json.loads(x)["loss"] for x in (metrics / "train.jsonl").read_text().splitlines()}
    assert all(math.isclose(tb[s], jl[s], rel_tol=1e-6) for s in jl)
    # Running the finished run again re-evaluates its last step but does not log it twice.
    again = train(**train_configs(**kwargs))
    assert again.start_step == 6
    assert _jsonl_steps(metrics / "eval_x.jsonl") == [2, 4, 6] and _jsonl_steps(metrics / "train.jsonl") == list(range(6))


class _NaNStream(SyntheticStream):
    """NaN loss weights (-> NaN loss) at the steps in `bad`."""

    bad: frozenset = frozenset()

    def get_batch(self, step):
        b = super().get_batch(step)
        if step in _NaNStream.bad:
            b["decoder_loss_weights"] = b["decoder_loss_weights"] * np.nan
        return b


def _nan_stream(**kw):
    s = synthetic_stream(**kw)
    return _NaNStream(**{f: getattr(s, f) for f in ("batch_size", "sequence_length", "vocab_size", "seed",
                                                    "shard_index", "num_shards")})


@pytest.fixture
def nan_steps():
    def set_bad(steps):
        _NaNStream.bad = frozenset(steps)

    yield set_bad
    _NaNStream.bad = frozenset()


def test_skip_stops_after_too_many_consecutive_nonfinite_steps(train_kwargs, nan_steps):
    nan_steps(range(2, 100))
    with pytest.raises(NonFiniteError) as e:
        train(**train_configs(**{**train_kwargs, "train_steps": 10, "on_nonfinite": "skip", "max_consecutive_nonfinite": 2,
                 "stream_factory": _nan_stream, "checkpoint_period": 100}))
    msg = str(e.value)
    assert "step 4: ON_NONFINITE = 'skip' stopped after 3 consecutive non-finite steps" in msg
    assert "max_consecutive_nonfinite = 2" in msg and "skipped steps this run: 2-4" in msg
    steps = _jsonl_steps(pathlib.Path(train_kwargs["model_dir"]) / "metrics" / "train.jsonl")
    assert steps == [0, 1, 2, 3, 4]  # every step up to the stop is on file


def test_a_nonfinite_stop_before_any_checkpoint_says_so_instead_of_printing_none(train_kwargs, nan_steps):
    nan_steps(range(1, 100))
    with pytest.raises(NonFiniteError) as e:
        train(**train_configs(**{**train_kwargs, "train_steps": 10, "stream_factory": _nan_stream, "checkpoint_period": 100}))
    msg = str(e.value)
    assert "None" not in msg and "No checkpoint was saved yet" in msg and "a rerun starts from step 0" in msg


def test_skip_stops_past_the_share_of_all_steps(train_kwargs, nan_steps):
    nan_steps({1, 3, 5, 7})
    kwargs = {**train_kwargs, "train_steps": 10, "on_nonfinite": "skip", "max_consecutive_nonfinite": 2,
              "max_nonfinite_fraction": 0.3, "stream_factory": _nan_stream, "checkpoint_period": 100}
    # cap = max(2, ceil(0.3 * 10)) = 3 non-finite steps in all: the 4th (step 7) stops the run.
    with pytest.raises(NonFiniteError, match=r"step 7: .*4 non-finite steps in all .* = 3\).*1, 3, 5, 7"):
        train(**train_configs(**kwargs))
    # (A run that skips fewer reports how many it skipped: test_train_checkpoints.py
    # test_nonfinite_skip_keeps_params_and_continues.)

