"""The evaluation model serves the Llama family: a tiny grouped-query Llama with an untied LM head, saved as a
Hugging Face Llama directory and loaded through the checkpoint resolver, scores options with the shared-prompt KV
cache exactly as a plain full forward pass does, and generates what greedy decoding without a cache gives."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optiml_jax.checkpoints.hf_llama import save_hf_llama
from optiml_jax.evaluation import DecoderOnlyModel
from optiml_jax.models import LlamaConfig, greedy_reference, init_model_params, model_for


@pytest.fixture(scope="module")
def llama_model(tmp_path_factory, mini_vocab):
    config = LlamaConfig.preset("tiny", vocab_size=mini_vocab.vocab_size, tie_word_embeddings=False, dtype="float32",
                                bos_token_id=2, eos_token_id=2, pad_token_id=1)
    assert config.num_kv_heads < config.num_heads
    params = jax.tree.map(lambda x: x * 4, init_model_params(config, jax.random.key(3)))  # well-separated scores
    out = tmp_path_factory.mktemp("hf_llama")
    save_hf_llama(config, params, out)
    return DecoderOnlyModel.from_checkpoint(out, mini_vocab, score_batch_size=4, predict_batch_size=4, max_new_tokens=5)


def test_checkpoint_loads_as_the_llama_family(llama_model):
    assert isinstance(llama_model.config, LlamaConfig) and not llama_model.config.tie_word_embeddings


def test_shared_prompt_scores_equal_a_full_forward(llama_model):
    m = llama_model
    rng = np.random.default_rng(0)
    prompts = [[2] + rng.integers(4, 2000, n).tolist() for n in (6, 1, 13)]
    options = [[rng.integers(4, 2000, k).tolist() for k in ks] for ks in ((1, 3), (2, 4, 1), (5,))]
    got = m.score_token_options(prompts, options)
    # the oracle: one plain forward pass over every prompt + option, right-padded to one length (causal
    # attention: a position never sees the padding after it)
    rows = [(prompt, option) for prompt, opts in zip(prompts, options) for option in opts]
    width = max(len(p) + len(o) for p, o in rows)
    batch = jnp.array([p + o + [1] * (width - len(p) - len(o)) for p, o in rows])
    all_logits = model_for(m.config).apply({"params": m.params}, batch)
    flat = [(logp, greedy) for row in got for logp, greedy in row]
    for (prompt, option), logits, (logp, greedy) in zip(rows, all_logits, flat, strict=True):
        lp = jax.nn.log_softmax(logits, -1)
        positions = range(len(prompt) - 1, len(prompt) - 1 + len(option))
        assert logp == pytest.approx(sum(float(lp[p, t]) for p, t in zip(positions, option)), rel=1e-5, abs=1e-4)
        assert greedy == all(int(jnp.argmax(logits[p])) == t for p, t in zip(positions, option))


def test_generation_equals_greedy_decoding_without_a_cache(llama_model):
    m = llama_model
    prompts = [[2, 40, 41, 42], [2, 300, 301, 302]]  # same length: one left-padding-free batch for the oracle
    got = m.generate_token_batches(prompts, max_new_tokens=5)
    ref = np.asarray(greedy_reference(m.config, m.params, np.array(prompts, np.int32), max_new_tokens=5))
    for row, cont in zip(ref.tolist(), got):
        cut = row.index(2) if 2 in row else len(row)  # continuations are cut at </s>
        assert cont == row[:cut]
