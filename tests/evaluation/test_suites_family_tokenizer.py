"""The evaluation suites in another model family's ids (issue 22): MMLU, BBH and RAFT (the files of ../shared/data)
evaluated by a Llama-family model with a Llama-3-shaped tokenizer (specials at the end, no pad; built here) or a
Qwen2-shaped one (no bos) get exactly the prompt text an OPT model with the mini-benchmark's BPE gets, and their prompt
ids are that tokenizer's own encoding of it (read with the `tokenizers` library directly), after the family's bos."""

import pathlib

import jax
import numpy as np
import pytest

from optiml_jax.evaluation import DecoderOnlyModel
from optiml_jax.evaluation.evaluator import build_source, evaluate_task
from optiml_jax.evaluation.suites.bbh import bbh_tasks
from optiml_jax.evaluation.suites.mmlu import mmlu_tasks
from optiml_jax.evaluation.suites.raft import raft_tasks
from optiml_jax.models import LlamaConfig, OPTConfig
from optiml_jax.models.family import init_model_params
from optiml_jax.tasks.mini_bench.registration import VOCABULARY
from optiml_jax.testing.family_tokenizers import write_family_tokenizer
from optiml_jax.vocabularies import HFTokenizerVocabulary
from optiml_jax.vocabularies.special_ids import special_ids_of

DATA_DIR = pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "data"
pytestmark = pytest.mark.skipif(not (DATA_DIR / "mmlu").is_dir(), reason="needs ../shared/data (MMLU, BBH, RAFT)")
POSITIONS = 8192  # long enough that no demonstration is dropped for either tokenizer
FAMILY_BOS = {"llama3": "<|begin_of_text|>", "qwen2": None}
FAMILY_EOS = {"llama3": "<|end_of_text|>", "qwen2": "<|endoftext|>"}


def _params(config, seed):
    """Zero parameters of the model's shapes (traced, not compiled): the prompt checks read the config and vocabulary
    only; the end-to-end evaluation below uses random ones."""
    shapes = jax.eval_shape(lambda: init_model_params(config, jax.random.key(seed)))
    return jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)


@pytest.fixture(scope="module")
def suites():
    tasks = mmlu_tasks(DATA_DIR / "mmlu", max_examples=2)[:2]
    tasks += bbh_tasks(DATA_DIR / "bbh", max_examples=2)[:2]
    tasks += raft_tasks(DATA_DIR / "raft", num_eval=2)[:2]
    assert {t.collection_name for t in tasks} == {"mmlu", "bbh", "raft"}
    return tasks


@pytest.fixture(scope="module")
def opt_model():
    config = OPTConfig.preset("tiny", vocab_size=VOCABULARY.vocab_size, max_position_embeddings=POSITIONS,
                              dropout_rate=0.0)
    return DecoderOnlyModel(config, _params(config, 0), VOCABULARY)


def _family_model(family, suites, root, params=_params):
    texts = [ex["input"] + " " + ex["target"] for t in suites for ex in list(t.examples) + list(t.demonstrations)[:3]]
    tok_dir = write_family_tokenizer(root / family, family, texts, bpe_size=400)
    vocab = HFTokenizerVocabulary(tok_dir)
    ids = special_ids_of(vocab)
    config = LlamaConfig.preset("tiny", vocab_size=ids.vocab_size, max_position_embeddings=POSITIONS,
                                bos_token_id=ids.bos, eos_token_id=ids.eos_id, pad_token_id=None, dtype="float32")
    return DecoderOnlyModel(config, params(config, 1), vocab, max_new_tokens=2), tok_dir


@pytest.mark.parametrize("family", list(FAMILY_BOS))
def test_suite_prompts_are_the_family_tokenizer_s_ids_of_unchanged_text(family, suites, opt_model, tmp_path):
    from tokenizers import Tokenizer

    model, tok_dir = _family_model(family, suites, tmp_path)
    raw = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    bos = FAMILY_BOS[family]
    prefix = [] if bos is None else [raw.token_to_id(bos)]
    assert model.special_ids.eos_id == raw.token_to_id(FAMILY_EOS[family])  # generation stops at the family's eos
    checked = 0
    for task in suites:
        for ex in task.examples:
            for shots in (0, 2):
                ours = build_source(model, task, ex, shots, reserve=8)
                assert ours == build_source(opt_model, task, ex, shots, reserve=8), (task.key, shots)  # same text
                ids = model.encode_prompt(ours)
                assert ids == prefix + raw.encode(ours, add_special_tokens=False).ids, (task.key, shots)
                assert raw.decode(ids[len(prefix):]) == ours
                checked += 1
    assert checked >= 20


@pytest.mark.slow
def test_mmlu_rank_classification_runs_in_llama_3_ids(suites, opt_model, tmp_path):
    model, _ = _family_model("llama3", suites, tmp_path,
                             params=lambda c, seed: init_model_params(c, jax.random.key(seed)))
    mmlu = next(t for t in suites if t.collection_name == "mmlu")
    record, rows = evaluate_task(model, mmlu, 2)
    assert record["num_examples"] == 2
    for ex, row in zip(mmlu.examples, rows):
        assert row["source"] == build_source(opt_model, mmlu, ex, 2, reserve=8)
        assert len(row["option_logprobs"]) == 4 and all(np.isfinite(row["option_logprobs"]))
