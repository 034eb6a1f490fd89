"""Hugging Face OPT directories <-> optiml_jax params: formats, round trips, and errors."""

import json

import numpy as np
import pytest
from hf_peers import CONFIGS, hf_model

from optiml_jax.checkpoints import CheckpointError, config_to_hf, load_hf_opt, load_params, save_hf_opt
from optiml_jax.models import OPTConfig, stack_layers

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from hf_dir_checks import (  # noqa: E402  (imports torch)
    assert_same_hf_tensors,
    assert_trees_equal,
    check_cli_round_trip_through_orbax,
    check_sharded_and_scanned,
    hf_state,
    run_convert,
    write_safetensors_dir,
)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_round_trip_hf_ours_hf_is_bit_identical(name, tmp_path):
    config = OPTConfig(**CONFIGS[name])
    model = hf_model(config, seed=3)
    model.save_pretrained(tmp_path / "a")
    loaded_config, params = load_hf_opt(tmp_path / "a")
    assert loaded_config == config
    assert all(x.dtype == np.float32 for x in _leaves(params))
    save_hf_opt(loaded_config, params, tmp_path / "b")
    assert (tmp_path / "b" / "model.safetensors").is_file()
    assert json.loads((tmp_path / "b" / "config.json").read_text())["model_type"] == "opt"
    assert_same_hf_tensors(transformers.OPTForCausalLM, hf_state(model), tmp_path / "b")


def test_the_loaded_config_has_the_config_json_s_ids(tmp_path):
    """The special ids are the directory's config.json's, not OPT's (here none of 1/2/2), and a config.json without
    them loads with none (unknown: the run's vocabulary gives them) rather than OPT's."""
    ids = dict(pad_token_id=0, bos_token_id=5, eos_token_id=6)
    model = hf_model(OPTConfig(**{**CONFIGS["pre_ln"], **ids}), seed=5)
    model.save_pretrained(tmp_path / "a")
    written = json.loads((tmp_path / "a" / "config.json").read_text())
    assert {k: written[k] for k in ids} == ids  # what transformers wrote
    loaded, _ = load_hf_opt(tmp_path / "a")
    assert {k: getattr(loaded, k) for k in ids} == ids
    for k in ids:
        del written[k]
    (tmp_path / "a" / "config.json").write_text(json.dumps(written))
    loaded, _ = load_hf_opt(tmp_path / "a")
    assert {k: getattr(loaded, k) for k in ids} == dict.fromkeys(ids)


def _leaves(tree):
    if isinstance(tree, dict):
        for v in tree.values():
            yield from _leaves(v)
    else:
        yield tree


def test_sharded_safetensors_and_scanned_layout(tmp_path):
    config = OPTConfig(**CONFIGS["post_ln_proj"])
    out = check_sharded_and_scanned(tmp_path, config, hf_model(config, seed=4), load_hf_opt, save_hf_opt,
                                    hf_shard_size="20KB", our_shard_size=30_000)
    assert not (out / "model.safetensors").exists()


def test_pytorch_bin_plain_and_sharded_without_model_prefix(tmp_path):
    """The original facebook/opt-* checkpoints are DecoderOnlyModel state dicts ('decoder.*') in pytorch_model.bin."""
    config = OPTConfig(**CONFIGS["pre_ln"])
    model = hf_model(config, seed=5)
    model.save_pretrained(tmp_path / "ref")
    _, expected = load_hf_opt(tmp_path / "ref")
    state = {k.removeprefix("model."): v for k, v in model.state_dict().items()}  # includes tied lm_head.weight
    plain = tmp_path / "bin"
    plain.mkdir()
    (plain / "config.json").write_text((tmp_path / "ref" / "config.json").read_text())
    torch.save(state, plain / "pytorch_model.bin")
    _, got = load_hf_opt(plain)
    assert_trees_equal(got, expected)

    sharded = tmp_path / "bin_sharded"
    sharded.mkdir()
    (sharded / "config.json").write_text((tmp_path / "ref" / "config.json").read_text())
    keys = sorted(state)
    halves = {"pytorch_model-00001-of-00002.bin": keys[: len(keys) // 2],
              "pytorch_model-00002-of-00002.bin": keys[len(keys) // 2:]}
    for fname, ks in halves.items():
        torch.save({k: state[k] for k in ks}, sharded / fname)
    weight_map = {k: f for f, ks in halves.items() for k in ks}
    (sharded / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    _, got = load_hf_opt(sharded)
    assert_trees_equal(got, expected)


def _write_hf(tmp_path, config, state):
    return write_safetensors_dir(tmp_path / "bad", config_to_hf(config), state)


def test_missing_and_misshapen_tensors_are_all_listed(tmp_path):
    config = OPTConfig(**CONFIGS["pre_ln"])
    state = {k: v for k, v in hf_model(config).state_dict().items() if k != "lm_head.weight"}
    del state["model.decoder.layers.1.fc2.bias"]
    del state["model.decoder.final_layer_norm.weight"]
    state["model.decoder.layers.0.fc1.weight"] = torch.zeros(81, 48)
    state["model.decoder.layers.7.fc1.weight"] = torch.zeros(80, 48)
    d = _write_hf(tmp_path, config, state)
    with pytest.raises(CheckpointError) as err:
        load_hf_opt(d)
    message = str(err.value)
    assert str(d) in message
    for fragment in ("missing tensor decoder.layers.1.fc2.bias", "missing tensor decoder.final_layer_norm.weight",
                     "decoder.layers.0.fc1.weight has shape [81, 48], expected [80, 48]",
                     "unexpected tensor decoder.layers.7.fc1.weight"):
        assert fragment in message
    assert len(err.value.problems) == 4


def test_config_that_is_not_opt_is_rejected(tmp_path):
    config = OPTConfig(**CONFIGS["pre_ln"])
    hf_model(config).save_pretrained(tmp_path / "x")
    cfg = json.loads((tmp_path / "x" / "config.json").read_text())
    cfg["model_type"] = "gpt2"
    cfg["activation_function"] = "gelu"
    (tmp_path / "x" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError) as err:
        load_hf_opt(tmp_path / "x")
    assert "model_type is 'gpt2', expected 'opt'" in str(err.value)
    assert "activation_function is 'gelu'" in str(err.value)
    # A valid config without weights is a different, equally clear error.
    (tmp_path / "x" / "model.safetensors").unlink()
    cfg["model_type"], cfg["activation_function"] = "opt", "relu"
    (tmp_path / "x" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="no weights found"):
        load_hf_opt(tmp_path / "x")


def test_untied_lm_head_is_rejected(tmp_path):
    config = OPTConfig(**CONFIGS["pre_ln"])
    state = dict(hf_model(config).state_dict())
    state["lm_head.weight"] = state["lm_head.weight"].clone() + 1.0
    d = _write_hf(tmp_path, config, state)
    with pytest.raises(CheckpointError, match="lm_head.weight differs"):
        load_hf_opt(d)


def test_save_rejects_params_that_do_not_fit_the_config(tmp_path):
    config = OPTConfig(**CONFIGS["pre_ln"])
    model = hf_model(config)
    model.save_pretrained(tmp_path / "a")
    _, params = load_hf_opt(tmp_path / "a")
    del params["decoder"]["layers_1"]
    params["decoder"]["embed_tokens"]["embedding"] = params["decoder"]["embed_tokens"]["embedding"][:50]
    with pytest.raises(CheckpointError) as err:
        save_hf_opt(config, params, tmp_path / "b")
    assert "missing parameter decoder/layers_1/fc1/kernel" in str(err.value)
    assert "decoder/embed_tokens/embedding has shape [50, 48], expected [101, 48]" in str(err.value)


def test_cli_round_trip_through_orbax(tmp_path):
    config = OPTConfig(**CONFIGS["post_ln_proj"])
    stored = check_cli_round_trip_through_orbax(tmp_path, config, hf_model(config, seed=6))
    assert OPTConfig.from_dict(stored) == config
    _, scanned = load_params(tmp_path / "orbax", scanned=True)
    assert_trees_equal(scanned, stack_layers(load_params(tmp_path / "hf")[1]))

    (tmp_path / "empty").mkdir()
    r = run_convert("orbax-to-hf", "--orbax_dir", str(tmp_path / "empty"), "--out_dir", str(tmp_path / "nope"))
    assert r.returncode == 2 and "not a checkpoint" in r.stderr and not (tmp_path / "nope").exists()
    with pytest.raises(CheckpointError, match="neither an Orbax checkpoint"):
        load_params(tmp_path)
