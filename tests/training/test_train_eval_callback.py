"""The trainer calls the (gin-bound) task-evaluation callback before training, every EVAL_PERIOD and at the end."""

from optiml_jax.testing.train_configs import train_configs
from optiml_jax.training.train_loop import train


def test_eval_callback_schedule_and_resume(train_kwargs):
    calls = []

    def callback(config, params, step, model_dir):
        calls.append(step)
        return {"step": step}

    kwargs = dict(train_kwargs, train_steps=4, eval_period=2, eval_callback=callback)
    result = train(**train_configs(**kwargs))
    assert calls == [0, 2, 4]
    assert sorted(result.task_eval_results) == [0, 2, 4]

    calls.clear()  # same command again: restores step 4, nothing left to train or evaluate
    train(**train_configs(**kwargs))
    assert calls == []

    calls.clear()  # extend the run: resumes at 4, no second "before training" evaluation
    train(**train_configs(**dict(kwargs, train_steps=6)))
    assert calls == [6]
