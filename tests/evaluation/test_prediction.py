"""Generation for evaluation: same tokens as the no-cache greedy oracle, cut at </s>; T5X-style batch API."""

import numpy as np

from optiml_jax.evaluation import prediction
from optiml_jax.models import greedy_reference


def test_generate_tokens_matches_greedy_reference_and_cuts_at_eos(tiny_model):
    config, params = tiny_model.config, tiny_model.params
    prompts = [[2, 40, 41, 42], [2, 7], [2, 99, 98, 97, 96, 95, 94]]
    conts, raw = prediction.generate_tokens(config, params, prompts, max_new_tokens=5, min_rows=4)
    assert raw.shape == (3, 5)
    for p, cont, row in zip(prompts, conts, raw):
        ref = np.asarray(greedy_reference(config, params, np.array([p]), max_new_tokens=5))[0]
        np.testing.assert_array_equal(row, ref)
        assert cont == prediction.cut_at_eos(ref, 2, 1)


def test_cut_at_eos():
    assert prediction.cut_at_eos([5, 6, 2, 7, 1], 2, 1) == [5, 6]
    assert prediction.cut_at_eos([1, 5, 6], 2, 1) == [5, 6]
    # several stop ids (Llama 3 instruct: <|end_of_text|>, <|eot_id|>): the first one met ends the continuation
    assert prediction.cut_at_eos([5, 128009, 7, 128001], (128001, 128009), 128001) == [5]


def test_predict_batch_with_aux_reads_padded_prompts(tiny_model):
    left = np.array([[1, 1, 2, 40, 41], [2, 7, 8, 9, 10]], np.int32)
    right = np.array([[2, 40, 41, 1, 1], [2, 7, 8, 9, 10]], np.int32)
    out_l, aux = tiny_model.predict_batch_with_aux(None, {"decoder_input_tokens": left}, max_new_tokens=4)
    out_r, _ = tiny_model.predict_batch_with_aux(None, {"decoder_input_tokens": right}, max_new_tokens=4)
    np.testing.assert_array_equal(out_l, out_r)
    assert out_l.shape == (2, 4)
    assert list(aux["lengths"]) == [len(prediction.cut_at_eos(r, 2, 1)) for r in out_l]


def test_text_generation_decodes_what_token_generation_produces(tiny_model, mini_vocab):
    texts = tiny_model.generate_texts(["Reverse the word: abc\nAnswer:"], max_new_tokens=4)
    ids = tiny_model.encode_prompt("Reverse the word: abc\nAnswer:", reserve=4)
    (cont,) = tiny_model.generate_token_batches([ids], max_new_tokens=4)
    assert texts == [mini_vocab.decode(cont)]
