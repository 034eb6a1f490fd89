"""Gin model files for the Llama family build the configs the presets describe."""

import gin
import pytest

from optiml_jax.models import LlamaConfig
from optiml_jax.cli import gin_setup as gin_config
from optiml_jax.training.model_config import check_same_architecture, llama_config, opt_config

BINDINGS = ["MODEL_DIR='/x'", "MIXTURE_OR_TASK_NAME='m'", "TASK_FEATURE_LENGTHS={'targets': 8}", "TRAIN_STEPS=1",
            "BATCH_SIZE=1"]


@pytest.mark.parametrize("name,layers,hidden,kv_heads,tied", [("llama_tiny", 2, 64, 2, True),
                                                              ("llama3_1b", 16, 2048, 8, True),
                                                              ("llama3_8b", 32, 4096, 8, False)])
def test_every_llama_model_file_builds_its_config(name, layers, hidden, kv_heads, tied):
    gin_config.parse_gin(["runs/train.gin", f"models/{name}.gin"], BINDINGS + ["SCAN_LAYERS=True"])
    config = gin.get_configurable("llama_config")()
    assert isinstance(config, LlamaConfig)
    assert (config.num_layers, config.hidden_size, config.num_kv_heads, config.tie_word_embeddings) == (
        layers, hidden, kv_heads, tied)
    assert (config.dtype, config.dropout_rate, config.scan_layers) == ("bfloat16", 0.1, True)
    assert gin.query_parameter("train.model_config").selector == "llama_config"


def test_llama_config_factory_and_architecture_check():
    config = llama_config("tiny", vocab_size=512, dtype="float32", num_kv_heads=1)
    assert (config.vocab_size, config.num_kv_heads, config.dtype) == (512, 1, "float32")
    check_same_architecture(config, config.replace(scan_layers=True), "same")
    with pytest.raises(ValueError, match="num_kv_heads: configured 1, checkpoint 2"):
        check_same_architecture(config, config.replace(num_kv_heads=2), "ckpt")
    with pytest.raises(ValueError, match="holds a 'opt'-family model, the configured model is 'llama'-family"):
        check_same_architecture(config, opt_config("tiny"), "ckpt")
