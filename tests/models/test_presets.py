"""Every OPT size matches the paper's architecture table (fact sheet section 7) and Hugging Face's parameter count."""

import pytest

from optiml_jax.models import OPTConfig

# (layers, hidden, heads, ffn, word_embed_proj_dim, pre-LN) from the OPT-IML fact sheet, section 7.
PAPER_TABLE = {
    "125m": (12, 768, 12, 3072, 768, True),
    "350m": (24, 1024, 16, 4096, 512, False),
    "1.3b": (24, 2048, 32, 8192, 2048, True),
    "2.7b": (32, 2560, 32, 10240, 2560, True),
    "6.7b": (32, 4096, 32, 16384, 4096, True),
    "13b": (40, 5120, 40, 20480, 5120, True),
    "30b": (48, 7168, 56, 28672, 7168, True),
    "66b": (64, 9216, 72, 36864, 9216, True),
    "175b": (96, 12288, 96, 49152, 12288, True),
}


@pytest.mark.parametrize("size", sorted(PAPER_TABLE))
def test_preset_matches_paper_table(size):
    c = OPTConfig.preset(size)
    assert (c.num_layers, c.hidden_size, c.num_heads, c.ffn_dim, c.embed_dim, c.do_layer_norm_before) == PAPER_TABLE[size]
    assert c.vocab_size == 50272 and c.max_position_embeddings == 2048
    assert c.head_dim == {"2.7b": 80}.get(size, 128 if c.hidden_size >= 4096 else 64)


@pytest.mark.parametrize("size", ["125m", "350m", "1.3b", "13b"])
def test_parameter_count_equals_hugging_face(size):
    torch = pytest.importorskip("torch")
    from transformers import OPTConfig as HFConfig
    from transformers import OPTForCausalLM

    from optiml_jax.checkpoints import config_to_hf

    config = OPTConfig.preset(size)
    with torch.device("meta"):  # shapes only: no memory for 13b
        model = OPTForCausalLM(HFConfig(**config_to_hf(config)))
    hf_count = sum(p.numel() for p in model.parameters())  # the tied LM head is counted once
    assert config.num_params() == hf_count


def test_preset_names_and_errors():
    assert OPTConfig.preset("opt-1.3b") == OPTConfig.preset("1_3b") == OPTConfig.preset("1.3b")
    with pytest.raises(ValueError, match="Unknown OPT size"):
        OPTConfig.preset("7b")
    with pytest.raises(ValueError, match="not divisible by num_heads"):
        OPTConfig(hidden_size=100, num_heads=3)
