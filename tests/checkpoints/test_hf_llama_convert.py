"""Hugging Face Llama / Mistral / Qwen2 directories <-> optiml_jax params: round trips, formats, refusals."""

import json

import pytest
from hf_llama_peers import CONFIGS, hf_model

from optiml_jax.checkpoints import (
    CheckpointError,
    config_to_hf_llama,
    load_hf,
    load_hf_llama,
    save_hf,
    save_hf_llama,
)
from optiml_jax.models import LlamaConfig, config_from_dict

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import hf_dir_checks as checks  # noqa: E402  (imports torch)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_round_trip_hf_ours_hf_is_bit_identical(name, tmp_path):
    config = LlamaConfig(**CONFIGS[name])
    model = hf_model(config, seed=3)
    model.save_pretrained(tmp_path / "a")
    loaded_config, params = load_hf(tmp_path / "a")  # dispatched on config.json's model_type
    assert loaded_config == config
    assert ("lm_head" in params) == (not config.tie_word_embeddings)
    save_hf(loaded_config, params, tmp_path / "b")
    written = json.loads((tmp_path / "b" / "config.json").read_text())
    assert written["model_type"] == config.hf_model_type
    assert transformers.AutoConfig.from_pretrained(tmp_path / "b").architectures == [type(model).__name__]
    checks.assert_same_hf_tensors(type(model), checks.hf_state(model), tmp_path / "b")
    # The exported config.json describes the same function (RoPE, norms, heads), not only the same tensors.
    reloaded = type(model).from_pretrained(tmp_path / "b", attn_implementation="eager").eval()
    tokens = torch.arange(3, 3 + 40).reshape(2, 20) % config.vocab_size
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=tokens).logits, model(input_ids=tokens).logits, rtol=0, atol=0)


def test_the_loaded_config_has_the_config_json_s_ids(tmp_path):
    """bos / eos (a list: several stop ids) / pad are the directory's config.json's, not Llama 3's."""
    config = LlamaConfig(**{**CONFIGS["llama_gqa"], "bos_token_id": 7, "eos_token_id": (8, 9), "pad_token_id": 3})
    hf_model(config, seed=6).save_pretrained(tmp_path / "a")
    written = json.loads((tmp_path / "a" / "config.json").read_text())
    assert (written["bos_token_id"], written["eos_token_id"], written["pad_token_id"]) == (7, [8, 9], 3)
    loaded, _ = load_hf(tmp_path / "a")
    assert (loaded.bos_token_id, loaded.eos_token_id, loaded.pad_token_id) == (7, (8, 9), 3)


def test_sharded_safetensors_and_scanned_layout(tmp_path):
    config = LlamaConfig(**CONFIGS["llama_gqa"])
    checks.check_sharded_and_scanned(tmp_path, config, hf_model(config, seed=4), load_hf_llama, save_hf_llama,
                                     hf_shard_size="50KB", our_shard_size=60_000)


def test_pytorch_bin_and_legacy_rope_scaling_config(tmp_path):
    """A .bin checkpoint whose config.json uses the transformers 4.x RoPE fields (rope_theta + rope_scaling)."""
    config = LlamaConfig(**CONFIGS["llama3_rope"])
    model = hf_model(config, seed=5)
    model.save_pretrained(tmp_path / "ref")
    _, expected = load_hf_llama(tmp_path / "ref")
    d = tmp_path / "bin"
    d.mkdir()
    torch.save(model.state_dict(), d / "pytorch_model.bin")
    legacy = config_to_hf_llama(config)
    rope = legacy.pop("rope_parameters")
    legacy["rope_scaling"] = {k: v for k, v in rope.items() if k != "rope_theta"}
    (d / "config.json").write_text(json.dumps(legacy))
    got_config, got = load_hf_llama(d)
    assert got_config == config
    checks.assert_trees_equal(got, expected)


def test_sliding_window_is_refused_unless_it_never_binds(tmp_path):
    config = LlamaConfig(**CONFIGS["mistral"])
    model = hf_model(config, seed=6)
    model.save_pretrained(tmp_path / "m")
    path = tmp_path / "m" / "config.json"
    hf = json.loads(path.read_text())
    hf["sliding_window"] = 16  # < max_position_embeddings = 64
    path.write_text(json.dumps(hf))
    with pytest.raises(CheckpointError, match=r"sliding_window=16 < max_position_embeddings=64") as err:
        load_hf_llama(tmp_path / "m")
    assert "cannot convert this Llama-family checkpoint" in str(err.value)
    hf["sliding_window"] = 64  # a window as long as the context never binds
    path.write_text(json.dumps(hf))
    assert load_hf_llama(tmp_path / "m")[0] == config
    # Qwen2 with use_sliding_window
    q = LlamaConfig(**CONFIGS["qwen2"])
    hf_model(q, seed=6).save_pretrained(tmp_path / "q")
    qpath = tmp_path / "q" / "config.json"
    qhf = json.loads(qpath.read_text())
    qhf.update(use_sliding_window=True, sliding_window=8, max_window_layers=0, layer_types=None)
    qpath.write_text(json.dumps(qhf))
    with pytest.raises(CheckpointError, match="sliding_window=8"):
        load_hf_llama(tmp_path / "q")


def test_unsupported_configs_and_tensors_are_all_listed(tmp_path):
    config = LlamaConfig(**CONFIGS["llama_gqa"])
    state = dict(hf_model(config).state_dict())
    del state["model.layers.1.mlp.up_proj.weight"]
    state["model.layers.0.self_attn.k_proj.weight"] = torch.zeros(48, 96)  # 3 kv heads instead of 2
    state["model.layers.5.mlp.up_proj.weight"] = torch.zeros(160, 96)
    d = checks.write_safetensors_dir(tmp_path / "bad", config_to_hf_llama(config), state)
    with pytest.raises(CheckpointError) as err:
        load_hf_llama(d)
    message = str(err.value)
    for fragment in ("missing tensor model.layers.1.mlp.up_proj.weight",
                     "model.layers.0.self_attn.k_proj.weight has shape [48, 96], expected [32, 96]",
                     "unexpected tensor model.layers.5.mlp.up_proj.weight"):
        assert fragment in message
    assert len(err.value.problems) == 3

    hf = config_to_hf_llama(config)
    hf.update(hidden_act="gelu", rope_parameters={"rope_type": "yarn", "rope_theta": 1e4, "factor": 2.0})
    (d / "config.json").write_text(json.dumps(hf))
    with pytest.raises(CheckpointError) as err:
        load_hf_llama(d)
    assert "hidden_act is 'gelu'" in str(err.value) and "rope_type 'yarn'" in str(err.value)
    hf = dict(config_to_hf_llama(config), model_type="gpt_neox")
    (d / "config.json").write_text(json.dumps(hf))
    with pytest.raises(CheckpointError, match="model_type is 'gpt_neox'"):
        load_hf(d)


def test_tied_lm_head_must_equal_the_embedding(tmp_path):
    config = LlamaConfig(**CONFIGS["qwen2"])  # tied
    state = dict(hf_model(config).state_dict())
    state["lm_head.weight"] = state["model.embed_tokens.weight"].clone() + 1.0
    d = checks.write_safetensors_dir(tmp_path / "tied", config_to_hf_llama(config), state)
    with pytest.raises(CheckpointError, match="lm_head.weight differs"):
        load_hf_llama(d)


def test_cli_round_trip_through_orbax(tmp_path):
    config = LlamaConfig(**CONFIGS["qwen2"])
    stored = checks.check_cli_round_trip_through_orbax(tmp_path, config, hf_model(config, seed=8))
    assert stored["family"] == "llama" and config_from_dict(stored) == config


def test_orbax_to_hf_with_the_run_s_tokenizer_loads_in_transformers(tmp_path):
    """`orbax-to-hf --tokenizer_dir`: the export carries the tokenizer files and its special ids in
    generation_config.json (Qwen2-shaped tokenizer: no bos, eos = pad = <|endoftext|>); a tokenizer with more ids
    than the model is refused."""
    import dataclasses

    import transformers

    from optiml_jax.cli.convert import main
    from optiml_jax.testing.family_tokenizers import write_family_tokenizer

    tok_dir = write_family_tokenizer(tmp_path / "tok", "qwen2", ["hello world, the fox"] * 30, bpe_size=300)
    n_ids = transformers.AutoTokenizer.from_pretrained(tok_dir).__len__()
    config = dataclasses.replace(LlamaConfig(**CONFIGS["qwen2"]), vocab_size=n_ids + 3)
    hf_model(config, seed=2).save_pretrained(tmp_path / "hf")
    assert main(["hf-to-orbax", "--hf_dir", str(tmp_path / "hf"), "--out_dir", str(tmp_path / "orbax")]) == 0
    assert main(["orbax-to-hf", "--orbax_dir", str(tmp_path / "orbax"), "--out_dir", str(tmp_path / "out"),
                 "--tokenizer_dir", str(tok_dir)]) == 0
    out = tmp_path / "out"
    assert (out / "tokenizer.json").is_file()
    tok = transformers.AutoTokenizer.from_pretrained(out)
    eos = tok.convert_tokens_to_ids("<|endoftext|>")
    gen = json.loads((out / "generation_config.json").read_text())
    assert (gen["bos_token_id"], gen["eos_token_id"], gen["pad_token_id"]) == (None, eos, eos)
    hf = transformers.AutoModelForCausalLM.from_pretrained(out)
    assert hf.generation_config.eos_token_id == eos
    small = tmp_path / "small_orbax"
    hf_model(dataclasses.replace(config, vocab_size=n_ids - 10), seed=2).save_pretrained(tmp_path / "hf_small")
    assert main(["hf-to-orbax", "--hf_dir", str(tmp_path / "hf_small"), "--out_dir", str(small)]) == 0
    assert main(["orbax-to-hf", "--orbax_dir", str(small), "--out_dir", str(tmp_path / "out2"),
                 "--tokenizer_dir", str(tok_dir)]) == 2
    assert not (tmp_path / "out2").exists()
