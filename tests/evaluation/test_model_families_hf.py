"""Evaluation and export in each model family's own special ids (issue 22), against transformers: a random tiny
Llama / Qwen2 / Mistral transformers checkpoint beside a tokenizer shaped like its family's (built here with the
`tokenizers` library; Llama 3: specials at the end, no pad, a second stop id `<|eot_id|>`-style in
generation_config.json; Qwen2: no bos; Mistral: bos 1, eos 2) is evaluated from its directory alone (tokenizer and
stop ids read from it), and

  * prompts are the ids `AutoTokenizer` gives (bos prepended or not, as the family's post-processor does);
  * rank-classification scores equal transformers' log-likelihoods within 1e-4;
  * greedy generation stops where transformers' `generate` stops, with the same tokens, on the directory we export
    (`save_hf` + the tokenizer files: `AutoModelForCausalLM` + `AutoTokenizer` load it).
"""

import json
import shutil
import sys
import pathlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from hf_llama_peers import hf_model  # noqa: E402

from optiml_jax.checkpoints.families import GENERATION_CONFIG, save_hf  # noqa: E402
from optiml_jax.evaluation import DecoderOnlyModel  # noqa: E402
from optiml_jax.evaluation.vocabulary import resolve_tokenizer  # noqa: E402
from optiml_jax.models import LlamaConfig  # noqa: E402
from optiml_jax.testing.family_tokenizers import write_family_tokenizer  # noqa: E402
from optiml_jax.vocabularies import HFTokenizerVocabulary  # noqa: E402
from optiml_jax.vocabularies.special_ids import special_ids_of  # noqa: E402

FAMILY_MODEL = {"llama3": "llama", "qwen2": "qwen2", "mistral": "mistral"}
TEXTS = ["The quick brown fox jumps over the lazy dog.", "Is this review positive? Answer: yes", "Answer: no",
         "Multiply 3 by 4. The product is 12.", "Translate the word into French: cat -> chat"] * 30
PROMPT = "Is this review positive? The fox is quick. Answer:"
MAX_NEW = 8


def _tokenizer_files(directory):
    return [p for p in pathlib.Path(directory).iterdir() if p.name.startswith(("tokenizer", "special_tokens"))]


@pytest.fixture(scope="module", params=list(FAMILY_MODEL))
def family_dir(request, tmp_path_factory):
    """(family, Hugging Face directory: random transformers model + the family's tokenizer, stop ids)."""
    family = request.param
    root = tmp_path_factory.mktemp(family)
    tok_dir = write_family_tokenizer(root / "tok", family, TEXTS, bpe_size=400)
    ids = special_ids_of(HFTokenizerVocabulary(tok_dir))
    kind = FAMILY_MODEL[family]
    config = LlamaConfig.preset("tiny", vocab_size=ids.vocab_size, hidden_size=64, num_heads=4, num_kv_heads=2,
                                ffn_dim=96, num_layers=2, max_position_embeddings=128, dtype="float32",
                                tie_word_embeddings=kind == "qwen2", attention_bias=kind == "qwen2",
                                hf_model_type=kind, bos_token_id=ids.bos, eos_token_id=ids.eos_id,
                                pad_token_id=None if ids.pad_from_eos else ids.pad)
    hf_dir = root / "hf"
    tok = transformers.AutoTokenizer.from_pretrained(tok_dir)
    prompt = torch.tensor([tok(PROMPT).input_ids])
    # a second stop id, as Llama 3 instruct's <|eot_id|>: a token greedy decoding emits for the first time at step
    # >= 1 (a seed whose random model does not just repeat one token)
    for seed in range(3, 20):
        model = hf_model(config, seed=seed)
        free = model.generate(prompt, max_new_tokens=MAX_NEW, do_sample=False, eos_token_id=None,
                              pad_token_id=ids.pad)[0, prompt.shape[1]:].tolist()
        stop_at = next((i for i in range(1, MAX_NEW) if free[i] not in free[:i] and free[i] not in ids.eos), None)
        if stop_at is not None and ids.eos_id not in free[:stop_at]:
            break
    model.save_pretrained(hf_dir, safe_serialization=True)
    for f in _tokenizer_files(tok_dir):
        shutil.copy(f, hf_dir / f.name)
    (hf_dir / GENERATION_CONFIG).write_text(json.dumps(
        {"bos_token_id": ids.bos, "eos_token_id": [ids.eos_id, free[stop_at]], "pad_token_id": ids.pad}))
    return family, hf_dir, free, stop_at


@pytest.fixture(scope="module")
def our_model(family_dir):
    _, hf_dir, _, _ = family_dir
    vocab = resolve_tokenizer(None, str(hf_dir))  # the tokenizer beside the checkpoint
    return DecoderOnlyModel.from_checkpoint(hf_dir, vocab, score_batch_size=2, predict_batch_size=2, max_new_tokens=MAX_NEW)


def test_prompts_and_scores_equal_transformers(family_dir, our_model):
    family, hf_dir, _, _ = family_dir
    tok = transformers.AutoTokenizer.from_pretrained(hf_dir)
    assert isinstance(our_model.vocabulary, HFTokenizerVocabulary)
    prompt = our_model.encode_prompt(PROMPT)
    assert prompt == tok(PROMPT).input_ids
    assert (prompt[0] == tok.bos_token_id) == (family != "qwen2")
    options = [" yes", " no", " maybe so"]
    got = our_model.score_options([PROMPT], [options])[0]
    hf = transformers.AutoModelForCausalLM.from_pretrained(hf_dir, attn_implementation="eager").eval()
    for option, scored in zip(options, got):
        ids = tok(option, add_special_tokens=False).input_ids
        with torch.no_grad():
            logits = hf(torch.tensor([prompt + ids])).logits[0].double()
        logp = torch.log_softmax(logits, -1)
        want = sum(float(logp[len(prompt) - 1 + k, t]) for k, t in enumerate(ids))
        assert scored["logprob"] == pytest.approx(want, abs=1e-4)


def test_generation_stops_where_transformers_stops_on_the_export(family_dir, our_model, tmp_path):
    family, hf_dir, free, stop_at = family_dir
    stop = free[stop_at]
    assert stop in our_model.special_ids.eos  # read from generation_config.json
    prompt = our_model.encode_prompt(PROMPT, reserve=MAX_NEW)
    (ours,) = our_model.generate_token_batches([prompt], max_new_tokens=MAX_NEW)
    assert ours == free[:stop_at]  # cut before the stop id
    # export: our parameters + config, the run's special ids, the tokenizer files
    out = save_hf(our_model.config, our_model.params, tmp_path / "export", special_ids=our_model.special_ids)
    for f in _tokenizer_files(hf_dir):
        shutil.copy(f, out / f.name)
    tok = transformers.AutoTokenizer.from_pretrained(out)
    hf = transformers.AutoModelForCausalLM.from_pretrained(out, attn_implementation="eager").eval()
    assert hf.generation_config.eos_token_id == list(our_model.special_ids.eos)
    ids = torch.tensor([tok(PROMPT).input_ids])
    generated = hf.generate(ids, max_new_tokens=MAX_NEW, do_sample=False)[0, ids.shape[1]:].tolist()
    assert generated == free[:stop_at] + [stop]  # transformers keeps the stop token and stops there
    assert tok.decode(generated[:-1], skip_special_tokens=True) == our_model.vocabulary.decode(ours)
    np.testing.assert_array_equal(np.asarray(tok(PROMPT).input_ids), np.asarray(prompt))
