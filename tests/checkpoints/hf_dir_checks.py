"""Checks the OPT and Llama-family conversion tests share: the same tensors after a round trip, the same trees,
sharded and scanned reading and writing, the convert CLI through Orbax, and a hand-written safetensors directory."""

import json
import subprocess
import sys

import numpy as np
import torch

from optiml_jax.checkpoints import load_params
from optiml_jax.models import stack_layers


def hf_state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_hf_tensors(hf_class, expected: dict, directory):
    """`hf_class.from_pretrained(directory)` holds exactly `expected` (same keys, dtypes and values)."""
    got = hf_class.from_pretrained(directory).state_dict()
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        assert got[key].dtype == value.dtype, key
        assert torch.equal(got[key], value), key


def assert_trees_equal(a, b):
    assert isinstance(a, dict) == isinstance(b, dict)
    if isinstance(a, dict):
        assert sorted(a) == sorted(b)
        for k in a:
            assert_trees_equal(a[k], b[k])
    else:
        np.testing.assert_array_equal(a, b)


def write_safetensors_dir(directory, hf_config: dict, state: dict):
    """A Hugging Face directory written by hand: `hf_config` as config.json, `state` as model.safetensors."""
    from safetensors.torch import save_file

    directory.mkdir()
    (directory / "config.json").write_text(json.dumps(hf_config))
    save_file({k: v.contiguous() for k, v in state.items()}, directory / "model.safetensors", metadata={"format": "pt"})
    return directory


def check_sharded_and_scanned(tmp_path, config, model, load, save, *, hf_shard_size: str, our_shard_size: int):
    """HF-sharded and single-file directories read to the same tree, `scanned=True` to its stacked form, and
    writing that scanned tree sharded gives a directory HF loads with the model's tensors. Returns the written
    directory."""
    model.save_pretrained(tmp_path / "sharded", max_shard_size=hf_shard_size)
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    model.save_pretrained(tmp_path / "single")
    _, from_sharded = load(tmp_path / "sharded")
    _, from_single = load(tmp_path / "single")
    assert_trees_equal(from_sharded, from_single)
    _, scanned = load(tmp_path / "sharded", scanned=True)
    assert_trees_equal(scanned, stack_layers(from_single))
    save(config, scanned, tmp_path / "out", max_shard_size=our_shard_size)
    index = json.loads((tmp_path / "out" / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    assert_same_hf_tensors(type(model), hf_state(model), tmp_path / "out")
    return tmp_path / "out"


def run_convert(*args) -> subprocess.CompletedProcess:
    """`python -m optiml_jax.convert ARGS` in a fresh process."""
    return subprocess.run([sys.executable, "-m", "optiml_jax.convert", *args], capture_output=True, text=True,
                          timeout=300)


def check_cli_round_trip_through_orbax(tmp_path, config, model) -> dict:
    """`convert hf-to-orbax` then `orbax-to-hf` gives back the model's tensors, and `load_params` reads the Orbax
    and the Hugging Face forms to the same config and tree. Returns the Orbax dir's config.json."""
    model.save_pretrained(tmp_path / "hf")
    r = run_convert("hf-to-orbax", "--hf_dir", str(tmp_path / "hf"), "--out_dir", str(tmp_path / "orbax"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "orbax" / "params").is_dir()
    r = run_convert("orbax-to-hf", "--orbax_dir", str(tmp_path / "orbax"), "--out_dir", str(tmp_path / "back"))
    assert r.returncode == 0, r.stderr
    assert_same_hf_tensors(type(model), hf_state(model), tmp_path / "back")
    cfg_a, from_orbax = load_params(tmp_path / "orbax")
    cfg_b, from_hf = load_params(tmp_path / "hf")
    assert cfg_a == cfg_b == config
    assert_trees_equal(from_orbax, from_hf)
    return json.loads((tmp_path / "orbax" / "config.json").read_text())
