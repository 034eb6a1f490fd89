"""The typed run configs (training/run_config.py): checked when built, frozen, bound by gin's macros, recorded in
MODEL_DIR/run_config.json; train() builds the trainer once."""

import dataclasses
import json
import pathlib

import gin
import pytest

from optiml_jax.cli import gin_setup
from optiml_jax.testing.train_configs import train_configs
from optiml_jax.training import trainer as trainer_lib
from optiml_jax.training.errors import ConfigValueError
from optiml_jax.training.run_config import (CheckpointConfig, DataConfig, EvaluationConfig, ExecutionConfig,
                                            OptimizerConfig)
from optiml_jax.training.synthetic_data import synthetic_stream
from optiml_jax.training.train_loop import train

DATA = dict(mixture_or_task_name="synthetic", task_feature_lengths={"targets": 32}, batch_size=4,
            stream_factory=synthetic_stream)


@pytest.fixture
def _clean_gin():
    yield
    gin.clear_config()


@pytest.mark.parametrize("build,message", [
    (lambda: DataConfig(**{**DATA, "batch_size": 0}), "BATCH_SIZE (DataConfig.batch_size) = 0: must be an integer >= 1"),
    (lambda: DataConfig(**{**DATA, "task_feature_lengths": {"targets": -1}}),
     "TASK_FEATURE_LENGTHS (DataConfig.task_feature_lengths) = {'targets': -1}: must be a mapping"),
    (lambda: DataConfig(**{**DATA, "stream_factory": None}), "DataConfig.stream_factory is unset"),
    (lambda: OptimizerConfig(train_steps=10, lr_decay="cosin"),
     "LR_DECAY (OptimizerConfig.lr_decay) = 'cosin': must be one of ('linear', 'cosine', 'constant')"),
    (lambda: OptimizerConfig(train_steps=10, learning_rate=float("nan")),
     "LEARNING_RATE (OptimizerConfig.learning_rate) = nan: must be a finite number >= 0"),
    (lambda: CheckpointConfig(model_dir="/x", keep_checkpoints=0),
     "KEEP_CHECKPOINTS (CheckpointConfig.keep_checkpoints) = 0: must be None or an integer >= 1"),
    (lambda: EvaluationConfig(eval_streams={"val": 3}),
     "EvaluationConfig.eval_streams = {'val': 3}: must be None or a mapping of split name to a stream factory"),
    (lambda: ExecutionConfig(on_nonfinite="ignore"),
     "ON_NONFINITE (ExecutionConfig.on_nonfinite) = 'ignore': must be one of ('stop', 'skip')"),
    (lambda: ExecutionConfig(max_runtime="soon"), "MAX_RUNTIME = 'soon'"),
])
def test_a_bad_value_is_refused_when_the_config_is_built_naming_macro_and_binding(build, message):
    with pytest.raises(ConfigValueError) as e:
        build()
    assert message in str(e.value)


def test_configs_are_frozen_and_copy_their_mappings():
    lengths = {"targets": 32}
    data = DataConfig(**{**DATA, "task_feature_lengths": lengths})
    lengths["targets"] = 64  # the caller's dict changing later does not change the run
    assert data.task_feature_lengths == {"targets": 32} and data.length == 32
    with pytest.raises(dataclasses.FrozenInstanceError):
        data.batch_size = 8


def test_gin_macros_reach_the_configs(_clean_gin):
    gin_setup.parse_gin(["runs/smoke_synthetic.gin"], ["LEARNING_RATE = 0.125", "BATCH_SIZE = 6", "SEED = 9",
                                                      "CHECKPOINT_PERIOD = 7", "EVAL_PERIOD = 3"])
    bound = gin.get_bindings("train", resolve_references=True)
    assert isinstance(bound["optimizer"], OptimizerConfig) and bound["optimizer"].learning_rate == 0.125
    assert isinstance(bound["data"], DataConfig) and bound["data"].batch_size == 6
    assert bound["execution"].seed == 9 and bound["checkpoint"].checkpoint_period == 7
    assert bound["evaluation"].eval_period == 3


def test_a_bad_macro_value_is_exit_2_before_model_dir_exists(tmp_path, capsys):
    from optiml_jax.cli import train as train_cli

    run = tmp_path / "run"
    code = train_cli.main(["--gin_file=runs/smoke_synthetic.gin", f"--gin.MODEL_DIR='{run}'", "--gin.LR_DECAY='cosin'",
                           "--no_progress"])
    assert code == 2 and "LR_DECAY (OptimizerConfig.lr_decay) = 'cosin'" in capsys.readouterr().err
    assert not run.exists()


def test_run_config_json_records_every_config_and_the_trainer_is_built_once(train_kwargs, monkeypatch):
    built = []
    original = trainer_lib.Trainer.__init__

    def counting_init(self, *args, **kwargs):
        built.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(trainer_lib.Trainer, "__init__", counting_init)
    result = train(**train_configs(**{**train_kwargs, "train_steps": 2, "learning_rate": 2e-3, "keep_checkpoints": 1}))
    assert len(built) == 1
    record = json.loads((pathlib.Path(result.model_dir) / "run_config.json").read_text())
    assert record["optimizer"]["learning_rate"] == 2e-3 and record["optimizer"]["train_steps"] == 2
    assert record["data"]["batch_size"] == 4 and record["data"]["task_feature_lengths"] == {"targets": 32}
    assert record["data"]["stream_factory"] == "optiml_jax.training.synthetic_data.synthetic_stream"
    assert record["checkpoint"]["keep_checkpoints"] == 1 and record["execution"]["peak_flops"] == 1e11
    assert record["execution"]["partitioner"]["mesh"] == {"data": 1, "fsdp": 1, "tensor": 1}
    assert record["model_config"]["hidden_size"] == train_kwargs["model_config"].hidden_size


def test_a_factory_or_callback_the_trainer_cannot_call_is_refused_when_bound():
    def old_factory(mixture_or_task_name, task_feature_lengths, batch_size):  # no seed / shard keywords
        raise AssertionError("never called")

    with pytest.raises(ConfigValueError, match=r"DataConfig.stream_factory = .*old_factory.* cannot be called as the "
                                               r"trainer calls it.*seed"):
        DataConfig(**{**DATA, "stream_factory": old_factory})
    with pytest.raises(ConfigValueError, match="EvaluationConfig.eval_callback = .* cannot be called"):
        EvaluationConfig(eval_callback=lambda params, step: {})
    EvaluationConfig(eval_streams={"val": synthetic_stream}, eval_callback=lambda config, params, step, model_dir: {})
