"""Llama presets and config plumbing: shapes equal the published Hugging Face architectures (built on the meta
device, no weights), JSON round trips carry the family, invalid configs are rejected."""

import json

import pytest

from optiml_jax.models import LLAMA_PRESETS, LlamaConfig, OPTConfig, config_from_dict, model_logical_axes

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

# Published parameter counts (model cards): Llama-3.2-1B 1.24B (tied), Meta-Llama-3-8B 8.03B.
PUBLISHED = {"1b": 1_235_814_400, "8b": 8_030_261_248}


@pytest.mark.parametrize("size", sorted(PUBLISHED))
def test_preset_matches_hf_architecture_parameter_count(size):
    from optiml_jax.checkpoints import config_to_hf_llama

    config = LlamaConfig.preset(size)
    hf_config = transformers.AutoConfig.for_model(**config_to_hf_llama(config))
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(hf_config)
    hf_count = sum(p.numel() for p in model.parameters())  # tied weights are one parameter
    assert hf_count == PUBLISHED[size] == config.num_params()


def test_special_ids_only_where_a_published_config_gives_them():
    """'1b' / '8b' carry meta-llama's config.json ids (bos <|begin_of_text|> 128000, eos <|end_of_text|> 128001, no
    pad); 'tiny' (not a published model) and a bare LlamaConfig carry none."""
    for size in ("1b", "8b"):
        c = LlamaConfig.preset(size)
        assert (c.bos_token_id, c.eos_token_id, c.pad_token_id) == (128000, 128001, None)
    for bare in (LlamaConfig(), LlamaConfig.preset("tiny")):
        assert (bare.bos_token_id, bare.eos_token_id, bare.pad_token_id, bare.eos_token_ids) == (None, None, None, ())


def test_json_round_trip_and_family_dispatch():
    for size in sorted(LLAMA_PRESETS):
        config = LlamaConfig.preset(size, eos_token_id=(128001, 128009), attention_block_sizes=(128, 128))
        stored = json.loads(config.to_json())
        assert stored["family"] == "llama"
        assert config_from_dict(stored) == config
    opt = OPTConfig.preset("tiny")
    assert "family" not in opt.to_dict() and config_from_dict(opt.to_dict()) == opt
    with pytest.raises(ValueError, match="unknown model family 'gpt'"):
        config_from_dict({"family": "gpt"})


def test_invalid_configs_are_rejected():
    with pytest.raises(ValueError, match="num_heads=6 is not a multiple of num_kv_heads=4"):
        LlamaConfig(hidden_size=96, num_heads=6, num_kv_heads=4)
    with pytest.raises(ValueError, match="rope_type='yarn'"):
        LlamaConfig(rope_type="yarn")
    with pytest.raises(ValueError, match="Unknown Llama size"):
        LlamaConfig.preset("70b")


def test_kv_heads_have_their_own_logical_axis():
    axes = model_logical_axes(LlamaConfig.preset("tiny", vocab_size=512))
    attn = axes["decoder"]["layers_0"]["self_attn"]
    assert tuple(attn["q_proj"]["kernel"]) == ("embed", "heads", "kv")
    assert tuple(attn["k_proj"]["kernel"]) == ("embed", "kv_heads", "kv")
    assert tuple(axes["decoder"]["embed_tokens"]["embedding"]) == ("vocab", "embed")
