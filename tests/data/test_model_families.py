"""Packed training batches in each model family's own special ids (issue 22): mini-benchmark tasks registered with
tokenizers shaped like Llama 3 (specials at the end, no pad), Qwen2 (no bos) and Mistral (bos 1, eos 2), built
here with the `tokenizers` library. Every packed segment must start with the family's bos (or, without one, with
the example's own first token, input only), end with its eos as a label, and pad with its pad id."""

import dataclasses

import numpy as np
import pytest

from optiml_jax.data import get_train_stream, packing
from optiml_jax.data.task_cache import task_tokens
from optiml_jax.tasks import mixtures, registry
from optiml_jax.tasks.mini_bench import TASKS_BY_NAME, generate_task
from optiml_jax.testing import assert_batch_contract, segments
from optiml_jax.testing.family_tokenizers import FAMILIES, write_family_tokenizer
from optiml_jax.vocabularies import HFTokenizerVocabulary
from optiml_jax.vocabularies.special_ids import special_ids_of

TASKS = ("mini_bench_niv2_multiply", "mini_bench_flan_sentiment", "mini_bench_unifiedskg_table_qa")
EXPECTED = {  # (bos text or None, eos text, pad text) of each family's tokenizer_config.json
    "llama3": ("<|begin_of_text|>", "<|end_of_text|>", "<|end_of_text|>"),  # no pad token: falls back to eos
    "qwen2": (None, "<|endoftext|>", "<|endoftext|>"),
    "mistral": ("<s>", "</s>", "</s>"),
}


def corpus():
    texts = []
    for name in TASKS:
        for ex in generate_task(name)["train"][:200]:
            texts += [ex["instruction"], ex["input"], " " + ex["target"]]
    return texts


@pytest.fixture(scope="module")
def family_mixtures(mini_bench, tmp_path_factory):
    """{family: (mixture name, vocabulary)}: the tasks re-registered under family-prefixed names."""
    out = {}
    texts = corpus()
    for family in FAMILIES:
        vocab = HFTokenizerVocabulary(write_family_tokenizer(tmp_path_factory.mktemp(family), family, texts))
        names = []
        for name in TASKS:
            info = dataclasses.replace(TASKS_BY_NAME[name], name=f"{family}_{name}")
            splits = {s: (lambda n=name, s=s: generate_task(n)[s]) for s in ("train", "validation")}
            registry.register_instruction_task(info, splits, vocab, replace=True)
            names.append(info.name)
        mixtures.register_rate_mixture(f"{family}_mixture", {n: 1.0 for n in names})
        out[family] = (f"{family}_mixture", vocab)
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_special_ids_are_the_tokenizers(family, family_mixtures):
    _, vocab = family_mixtures[family]
    bos, eos, pad = EXPECTED[family]
    tok = vocab.tokenizer
    ids = special_ids_of(vocab)
    assert ids.bos == (None if bos is None else tok.token_to_id(bos))
    assert ids.eos == (tok.token_to_id(eos),) and ids.pad == tok.token_to_id(pad)
    assert ids.vocab_size == tok.get_vocab_size()
    if family == "mistral":
        assert (ids.bos, ids.eos_id) == (1, 2)
    else:  # the specials are the last ids of the vocabulary
        assert ids.eos_id >= ids.vocab_size - 5


@pytest.mark.parametrize("family", FAMILIES)
def test_every_packed_segment_is_a_sequence_of_the_family(family, family_mixtures):
    name, vocab = family_mixtures[family]
    ids = special_ids_of(vocab)
    stream = get_train_stream(name, 256, batch_size=4, seed=3)
    assert stream.special_ids == ids
    batch = stream.get_batch(0)
    assert_batch_contract(batch, batch_size=4, length=256, special_ids=ids)
    pad = batch["decoder_segment_ids"] == 0
    assert pad.any() and (batch["decoder_input_tokens"][pad] == ids.pad).all()
    n = 0
    for r in range(4):
        for tgt, inp, w in segments(batch, r):
            n += 1
            assert tgt[-1] == ids.eos_id and w[-1] == 1
            if ids.bos is None:
                assert inp[0] != ids.eos_id and w[0] == 0  # the example's first (prompt) token, input only
            else:
                assert inp[0] == ids.bos
            assert ids.bos is None or ids.bos not in tgt  # a bos is never a label
    assert n >= 4


@pytest.mark.parametrize("family", FAMILIES)
def test_segment_layout_against_the_examples(family, family_mixtures):
    """Packing one task's examples directly: inputs/targets are [bos] + ids[:-1] / ids, or ids[:-1] / ids[1:]."""
    _, vocab = family_mixtures[family]
    ids = special_ids_of(vocab)
    toks = task_tokens(f"{family}_{TASKS[0]}", "train")
    examples = [toks.example(j) for j in range(6)]
    batch, rows = packing.pack(examples, 2, 128, ids)
    assert (rows >= 0).all()
    by_row = {r: [e for e, rr in zip(examples, rows) if rr == r] for r in range(2)}
    for r in range(2):
        got = list(segments(batch, r))
        want = by_row[r]  # in the order given

        assert len(got) == len(want)
        for (tgt, inp, w), (tokens, weights) in zip(got, want):
            if ids.bos is None:
                np.testing.assert_array_equal(inp, tokens[:-1])
                np.testing.assert_array_equal(tgt, tokens[1:])
                np.testing.assert_array_equal(w, weights[1:])
            else:
                np.testing.assert_array_equal(inp, np.concatenate([[ids.bos], tokens[:-1]]))
                np.testing.assert_array_equal(tgt, tokens)
