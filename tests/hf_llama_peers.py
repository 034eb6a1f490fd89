"""Tiny Hugging Face PyTorch Llama / Mistral / Qwen2 peers with random weights (no downloads), shared by the model
and conversion tests. Each architecture exercises something the others do not."""

from optiml_jax.models import LlamaConfig

_BASE = dict(num_layers=2, vocab_size=101, max_position_embeddings=64, rope_theta=10000.0, rms_norm_eps=1e-6,
             pad_token_id=0, bos_token_id=1, eos_token_id=2)
CONFIGS = {
    # grouped-query attention: 6 query heads on 2 key/value heads, untied LM head
    "llama_gqa": dict(_BASE, hidden_size=96, num_heads=6, num_kv_heads=2, ffn_dim=160),
    # Llama 3.1 RoPE scaling (original context 16 < max positions, so every frequency band is exercised),
    # multi-query attention (1 kv head), Llama's q/k/v/o and MLP biases
    "llama3_rope": dict(_BASE, hidden_size=64, num_heads=4, num_kv_heads=1, ffn_dim=128, rope_type="llama3",
                        rope_theta=500000.0, rope_factor=8.0, rope_low_freq_factor=1.0, rope_high_freq_factor=4.0,
                        rope_original_max_position_embeddings=16, attention_bias=True, attention_out_bias=True,
                        mlp_bias=True),
    # Qwen2: q/k/v biases (no o_proj bias), tied embeddings
    "qwen2": dict(_BASE, hidden_size=64, num_heads=4, num_kv_heads=2, ffn_dim=112, attention_bias=True,
                  tie_word_embeddings=True, hf_model_type="qwen2"),
    # Mistral without sliding window; head_dim 24 != hidden / heads
    "mistral": dict(_BASE, hidden_size=64, num_heads=4, num_kv_heads=2, ffn_dim=96, head_dim_override=24,
                    hf_model_type="mistral"),
}
HF_CLASSES = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM"}


def randomize_(module, seed: int) -> None:
    """Random values for every parameter (norm scales around 1, biases too), so no mapping hides behind 0 or 1."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if "norm" in name:
                p.copy_(1.0 + 0.1 * noise)
            else:
                p.copy_(0.1 * noise)


def hf_class(config: LlamaConfig):
    import transformers

    return getattr(transformers, HF_CLASSES[config.hf_model_type])


def hf_model(config: LlamaConfig, seed: int = 0):
    """An eval-mode HF model of `config.hf_model_type` with `config`'s architecture and random weights."""
    import torch
    import transformers

    from optiml_jax.checkpoints import config_to_hf_llama

    torch.manual_seed(seed)
    hf_config = transformers.AutoConfig.for_model(**config_to_hf_llama(config))
    hf_config._attn_implementation = "eager"
    model = hf_class(config)(hf_config).eval()
    randomize_(model, seed)
    if config.tie_word_embeddings:
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    return model
