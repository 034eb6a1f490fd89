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


# Fact sheet section 7: "pad_token_id = 1, eos_token_id = 2, bos_token_id = 2 in the hub configs".
HUB_IDS = {"pad_token_id": 1, "bos_token_id": 2, "eos_token_id": 2}
ID_FIELDS = tuple(HUB_IDS)


@pytest.mark.parametrize("size", sorted(PAPER_TABLE))
def test_published_sizes_carry_their_hub_config_ids(size):
    c = OPTConfig.preset(size)
    assert {f: getattr(c, f) for f in ID_FIELDS} == HUB_IDS


def test_a_config_built_without_a_model_s_files_knows_no_ids():
    """No family's ids by default: a bare OPTConfig and the 'tiny' preset (not a published model) have none, and
    asking for them without a vocabulary fails naming the field; overrides give them, and model_config.json
    (to_json / from_dict) carries either state back."""
    import json

    from optiml_jax.models import config_from_dict
    from optiml_jax.vocabularies.special_ids import special_ids_of_config

    for bare in (OPTConfig(), OPTConfig.preset("tiny")):
        assert {f: getattr(bare, f) for f in ID_FIELDS} == dict.fromkeys(ID_FIELDS)
        with pytest.raises(ValueError, match="OPTConfig has no eos_token_id: pass a vocabulary"):
            special_ids_of_config(bare)
        assert config_from_dict(json.loads(bare.to_json())) == bare
    given = OPTConfig.preset("tiny", pad_token_id=7, bos_token_id=5, eos_token_id=6)
    assert config_from_dict(json.loads(given.to_json())) == given
    ids = special_ids_of_config(given)
    assert (ids.bos, ids.eos, ids.pad) == (5, (6,), 7)


def test_the_model_config_modules_import_no_vocabulary():
    """Model-family facts come from the model's files: the config modules read no ids from optiml_jax.vocabularies."""
    import ast
    import pathlib

    models = pathlib.Path(__file__).resolve().parents[2] / "optiml_jax" / "models"
    for name in ("config.py", "llama_config.py"):
        tree = ast.parse((models / name).read_text())
        imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        assert not [m for m in imported if m and m.startswith("optiml_jax.vocabularies")], name
