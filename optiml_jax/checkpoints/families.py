"""Pick the Hugging Face converter by family: `config.json`'s `model_type` when reading, the config's type when
writing. `load_params` / the CLI go through here, so they take OPT and Llama-family checkpoints alike.

    load_hf(directory)               # model_type 'opt' -> load_hf_opt; 'llama' | 'mistral' | 'qwen2' -> load_hf_llama
    save_hf(config, params, directory)
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

from optiml_jax.checkpoints.hf import load_hf_opt, save_hf_opt
from optiml_jax.checkpoints.hf_llama import load_hf_llama, save_hf_llama
from optiml_jax.checkpoints.hf_tensors import HF_CONFIG, CheckpointError
from optiml_jax.models.llama_config import HF_MODEL_TYPES

_LOADERS = {"opt": load_hf_opt, **{t: load_hf_llama for t in HF_MODEL_TYPES}}


def hf_model_type(directory: str | os.PathLike) -> str | None:
    """`model_type` from a Hugging Face directory's config.json (None when absent or unreadable)."""
    try:
        return json.loads((pathlib.Path(directory) / HF_CONFIG).read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None


def load_hf(directory: str | os.PathLike, *, scanned: bool = False) -> tuple[Any, dict]:
    """(config, float32 numpy params) from any supported Hugging Face causal-LM directory."""
    model_type = hf_model_type(directory)
    if model_type not in _LOADERS:
        raise CheckpointError(directory, [f"config.json model_type is {model_type!r}; supported: "
                                          f"{sorted(_LOADERS)}"], kind="Hugging Face")
    return _LOADERS[model_type](directory, scanned=scanned)


GENERATION_CONFIG = "generation_config.json"


def generation_config(config: Any, special_ids: Any = None) -> dict[str, Any]:
    """What `transformers`' `generate` reads from `generation_config.json`: bos, the eos id(s) it stops at, pad.

    `special_ids` (an `optiml_jax.vocabularies.SpecialIds`, the run's vocabulary's) wins over the config's ids,
    so an exported model stops where our generation stopped; without it the model config's ids are written."""
    from optiml_jax.vocabularies.special_ids import special_ids_of_config

    ids = special_ids if special_ids is not None else special_ids_of_config(config)
    eos = list(ids.eos)
    return {"_from_model_config": False, "bos_token_id": ids.bos, "eos_token_id": eos[0] if len(eos) == 1 else eos,
            "pad_token_id": ids.pad, "do_sample": False}


def generation_stop_ids(directory: str | os.PathLike) -> tuple[int, ...]:
    """The eos id(s) of a Hugging Face directory's `generation_config.json` (where `generate` stops); () without."""
    path = pathlib.Path(directory) / GENERATION_CONFIG
    try:
        eos = json.loads(path.read_text()).get("eos_token_id")
    except (OSError, ValueError, AttributeError):
        return ()
    eos = eos if isinstance(eos, list) else [eos]
    return tuple(int(e) for e in eos if isinstance(e, int))


def save_hf(config: Any, params: Any, directory: str | os.PathLike, *,
            max_shard_size: int | str | None = None, special_ids: Any = None) -> pathlib.Path:
    """Write a Hugging Face directory for `config`'s family (OPTConfig -> OPT, LlamaConfig -> its hf_model_type),
    with `generation_config.json` (`generation_config`: the stop ids transformers' `generate` uses)."""
    from optiml_jax.models.family import family_of

    save = save_hf_opt if family_of(config) == "opt" else save_hf_llama
    out = pathlib.Path(save(config, params, directory, max_shard_size=max_shard_size))
    (out / GENERATION_CONFIG).write_text(json.dumps(generation_config(config, special_ids), indent=2, sort_keys=True))
    return out


def config_from_hf_any(hf: dict[str, Any], where: str = "config.json") -> Any:
    """The architecture of a Hugging Face config.json dict, for its family (OPT or a Llama-family model_type)."""
    from optiml_jax.checkpoints.hf import config_from_hf
    from optiml_jax.checkpoints.hf_llama import config_from_hf_llama

    return config_from_hf_llama(hf, where) if hf.get("model_type") in HF_MODEL_TYPES else config_from_hf(hf, where)
