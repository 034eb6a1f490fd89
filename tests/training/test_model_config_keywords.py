"""The model factories' keywords, written once (`with_execution_keywords`), still reach gin as explicit keywords:
a misspelt binding is an error naming it, and every execution choice lands in the config."""

import gin
import pytest

from optiml_jax.cli import gin_setup as gin_config
from optiml_jax.training.model_config import llama_config, model_config_from_checkpoint, opt_config

BINDINGS = ["MODEL_DIR='/x'", "MIXTURE_OR_TASK_NAME='m'", "TASK_FEATURE_LENGTHS={'targets': 8}", "TRAIN_STEPS=1",
            "BATCH_SIZE=1"]


@pytest.mark.parametrize("binding", ["opt_config.dropout = 0.1", "llama_config.kv_heads = 2",
                                     "model_config_from_checkpoint.num_layers = 2"])
def test_a_misspelt_or_foreign_binding_is_rejected_by_gin(binding):
    with pytest.raises(ValueError, match=binding.split(" ")[0].split(".")[1]):
        gin_config.parse_gin(["runs/train.gin", "models/opt_tiny.gin"], BINDINGS + [binding])


def test_gin_bindings_reach_every_execution_choice():
    gin_config.parse_gin(["runs/train.gin", "models/opt_tiny.gin"],
                         BINDINGS + ["opt_config.attention_block_sizes = [16, 32]", "opt_config.remat_policy = 'full'",
                                     "opt_config.dropout_rate = 0", "opt_config.num_layers = 3"])
    config = gin.get_configurable("opt_config")()
    assert (config.attention_block_sizes, config.remat_policy, config.num_layers) == ((16, 32), "full", 3)
    assert isinstance(config.dropout_rate, float) and config.dropout_rate == 0.0


def test_python_callers_get_the_same_keywords_and_defaults():
    opt = opt_config("tiny")
    assert (opt.dtype, opt.dropout_rate, opt.scan_layers, opt.attention_backend, opt.attention_block_sizes) == (
        "bfloat16", 0.1, False, "reference", None)
    assert llama_config("tiny").dropout_rate == 0.0
    assert llama_config("tiny", eos_token_id=2, pad_token_id=1).eos_token_id == 2
    with pytest.raises(TypeError, match="num_kv_heads"):
        opt_config("tiny", num_kv_heads=2)  # a Llama field: not an OPT factory keyword
    with pytest.raises(TypeError):
        opt_config("tiny", 0.1)  # execution choices are keyword-only
    with pytest.raises(TypeError, match="hidden_size"):
        model_config_from_checkpoint("/x", hidden_size=8)  # the architecture is the checkpoint's
