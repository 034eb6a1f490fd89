"""Evaluations next to saves: a preemption on an EVAL_PERIOD step leaves that step's evaluation to the resumed run
(which runs it on the same parameters, with the step's label), and an evaluation's or a save's time is not counted
into the step time (`step_time_s`, tokens/s, MFU) of the steps logged after it."""

import json
import os
import pathlib
import signal
import time

import jax

from optiml_jax.testing.train_configs import train_configs
from optiml_jax.checkpoints import integrity
from optiml_jax.checkpoints.training_runs import restore_params_from_run
from optiml_jax.training import train_state
from optiml_jax.training.preemption import Preempted
from optiml_jax.training.synthetic_data import synthetic_stream
from optiml_jax.training.train_loop import train

import pytest


def _signalling_stream(signum, at_step):
    """The synthetic stream; it sends `signum` to this process while the batch of `at_step` is read."""
    def factory(**kw):
        stream = synthetic_stream(**kw)
        get_batch = stream.get_batch

        def get(step):
            if step == at_step:
                os.kill(os.getpid(), signum)
            return get_batch(step)

        stream.get_batch = get
        return stream
    return factory


def _eval_steps(model_dir, split):
    path = pathlib.Path(model_dir) / "metrics" / f"eval_{split}.jsonl"
    return [json.loads(x)["step"] for x in path.read_text().splitlines()] if path.exists() else []


def _checkpoint_params(model_dir, step, kw):
    from optiml_jax.training.optimizer import make_optimizer, make_schedule

    tx = make_optimizer(make_schedule(1e-3, 1, kw["train_steps"], "linear", 0.0), 0.9, 0.95, 1e-8, 0.0,
                        clip_grad_norm=1.0)
    target = train_state.abstract_state(kw["model_config"], tx, kw["partitioner"]).params
    params, found = restore_params_from_run(model_dir, target, step=step)
    assert found == step
    return integrity.array_checksums({"p": params})


@pytest.mark.slow  # three short runs, 18 s
def test_a_preemption_on_an_eval_step_leaves_its_evaluation_to_the_resumed_run(train_kwargs):
    kw = {**train_kwargs, "train_steps": 4, "checkpoint_period": 100, "eval_period": 2,
          "eval_streams": {"validation": synthetic_stream}}
    calls = []

    def callback(config, params, step, model_dir):
        calls.append((step, integrity.array_checksums({"p": params})))
        return {"step": step}

    with pytest.raises(Preempted) as e:  # the signal arrives in step 1: the run stops after step 2, an eval step
        train(**train_configs(**{**kw, "eval_callback": callback, "stream_factory": _signalling_stream(signal.SIGTERM, 1)}))
    assert e.value.step == 2
    assert [s for s, _ in calls] == [0] and _eval_steps(kw["model_dir"], "validation") == []  # saved, not evaluated
    calls_before = len(calls)
    resumed = train(**train_configs(**{**kw, "eval_callback": callback}))
    assert resumed.restored_from == 2
    assert [s for s, _ in calls[calls_before:]] == [2, 4]  # step 2's evaluation first, then the final one
    assert _eval_steps(kw["model_dir"], "validation") == [2, 4]
    assert calls[1][1] == _checkpoint_params(kw["model_dir"], 2, kw)  # on checkpoint 2's parameters
    calls.clear()
    train(**train_configs(**{**kw, "eval_callback": callback}))  # a rerun of the finished run evaluates nothing again
    assert calls == []


@pytest.mark.slow  # a run and a 2 s evaluation, 10 s
def test_evaluations_and_saves_are_not_counted_into_the_step_time(train_kwargs):
    """A 2 s evaluation after step 2 used to land in the step time of steps 2 and 3 (>= 1 s each)."""
    def slow_callback(config, params, step, model_dir):
        if 0 < step < 4:
            time.sleep(2.0)
        return {}

    kw = {**train_kwargs, "train_steps": 4, "checkpoint_period": 2, "eval_period": 2, "eval_callback": slow_callback}
    result = train(**train_configs(**kw))
    times = {h["step"]: h["step_time_s"] for h in result.history}
    assert times[2] < 0.5 and times[3] < 0.5, times
    assert result.history[2]["tokens_per_second"] > 4 * 32 / 0.5
