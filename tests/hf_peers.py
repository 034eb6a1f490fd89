"""Tiny Hugging Face PyTorch OPT peers with random weights (no downloads), shared by the model and conversion tests."""

import numpy as np
import pytest

from optiml_jax.models import OPTConfig

# The peers use OPT's id layout (pad 1, bos = eos 2), given explicitly: OPTConfig has no default ids.
OPT_IDS = dict(pad_token_id=1, bos_token_id=2, eos_token_id=2)
# Odd sizes on purpose: 3 heads of 16, vocab not a power of two.
PRE_LN = dict(hidden_size=48, num_heads=3, num_layers=2, ffn_dim=80, vocab_size=101, max_position_embeddings=64,
              **OPT_IDS)
POST_LN_PROJ = dict(PRE_LN, word_embed_proj_dim=32, do_layer_norm_before=False)
CONFIGS = {"pre_ln": PRE_LN, "post_ln_proj": POST_LN_PROJ}


def randomize_(module, seed: int) -> None:
    """Give every HF parameter (biases and LayerNorms too) random values, so no mapping hides behind a 0 or 1."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if "layer_norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * noise)
            elif "layer_norm" in name or name.endswith("bias"):
                p.copy_(0.1 * noise)
            else:
                p.copy_(0.1 * noise)


def hf_model(config: OPTConfig, seed: int = 0):
    """An eval-mode `transformers.OPTForCausalLM` with the same architecture as `config`, random weights."""
    import torch
    from transformers import OPTConfig as HFConfig
    from transformers import OPTForCausalLM

    from optiml_jax.checkpoints import config_to_hf

    torch.manual_seed(seed)
    model = OPTForCausalLM(HFConfig(**config_to_hf(config))).eval()
    randomize_(model, seed)
    return model


@pytest.fixture(params=sorted(CONFIGS))
def hf_pair(request, tmp_path):
    """(name, our config, HF model, our params converted from the HF model's saved directory)."""
    from optiml_jax.checkpoints import load_hf_opt

    config = OPTConfig(**CONFIGS[request.param])
    model = hf_model(config, seed=len(request.param))
    model.save_pretrained(tmp_path / "hf")
    loaded_config, params = load_hf_opt(tmp_path / "hf")
    return request.param, loaded_config, model, params


def left_padded_batch(vocab_size, lengths, total, pad_id=1, seed=0):
    """Tokens [len(lengths), total], row i = `total - lengths[i]` pads then real tokens (never the pad id, nor the
    ids below 3: OPT's specials). OPT's pad id (1) by default; the Llama tests pass theirs."""
    rng = np.random.default_rng(seed)
    tokens = np.full((len(lengths), total), pad_id, np.int64)
    for i, n in enumerate(lengths):
        tokens[i, total - n:] = rng.integers(3, vocab_size, n)
    return tokens
