"""USE_CHAT_TEMPLATE (issue 22, chat templates): instruction examples rendered through the run tokenizer's chat
template, with the loss on the assistant's tokens only. Tokenizer directories shaped like Llama 3's and Qwen2's
(optiml_jax.testing.family_tokenizers, with their chat templates in tokenizer_config.json) are built here; ids are
checked against transformers' own `apply_chat_template`."""

import dataclasses

import numpy as np
import pytest

from optiml_jax.data.chat_examples import turns_from_pieces
from optiml_jax.data.demonstrations import MetaICLConfig
from optiml_jax.data.stream import TrainStream
from optiml_jax.tasks import mixtures, registry
from optiml_jax.tasks.formatting import DEFAULT_SEPARATOR, draw_delimiter, layout
from optiml_jax.tasks.mini_bench import TASKS_BY_NAME, generate_task
from optiml_jax.testing.family_tokenizers import write_family_tokenizer
from optiml_jax.vocabularies import HFTokenizerVocabulary
from optiml_jax.vocabularies.chat_template import ChatTemplate, ChatTemplateError, assistant, user
from optiml_jax.vocabularies.special_ids import special_ids_of

TASKS = ("mini_bench_niv2_multiply", "mini_bench_flan_sentiment")  # task-level (a definition) and instance-level
FAMILIES = ("llama3", "qwen2")
# what closes an assistant turn in each family's template, as it renders it (independent of our code)
END_OF_TURN = {"llama3": "<|eot_id|>", "qwen2": "<|im_end|>\n"}
GENERATION_PROMPT = {"llama3": "<|start_header_id|>assistant<|end_header_id|>\n\n", "qwen2": "<|im_start|>assistant\n"}
CONVERSATION = [user("Multiply 3 by 4.\nAnswer:"), assistant("12"), user("Multiply 5 by 6.\nOutput:"),
                assistant("30 is the product")]


@pytest.fixture(scope="module")
def families(tmp_path_factory):
    """{family: (vocabulary, {mini-bench task: our re-registration of it in that vocabulary}, mixture)}"""
    texts = [t for n in TASKS for ex in generate_task(n)["train"][:200]
             for t in (ex["instruction"], ex["input"], " " + ex["target"])]
    out = {}
    for family in FAMILIES:
        vocab = HFTokenizerVocabulary(write_family_tokenizer(tmp_path_factory.mktemp(family), family, texts))
        names = {}
        for name in TASKS:
            info = dataclasses.replace(TASKS_BY_NAME[name], name=f"chat_{family}_{name}")
            registry.register_instruction_task(info, {"train": lambda n=name: generate_task(n)["train"][:40]},
                                               vocab, replace=True)
            names[name] = info.name
        mixtures.register_rate_mixture(f"chat_{family}_mixture", {n: 1.0 for n in names.values()})
        out[family] = (vocab, names, f"chat_{family}_mixture")
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_ids_equal_transformers_apply_chat_template(family, families):
    transformers = pytest.importorskip("transformers")
    vocab = families[family][0]
    theirs = transformers.AutoTokenizer.from_pretrained(vocab.path)
    chat = ChatTemplate.from_vocabulary(vocab)
    ids, _ = chat.encode_conversation(CONVERSATION)
    assert ids == theirs.apply_chat_template(CONVERSATION, tokenize=True, return_dict=True)["input_ids"]
    prompt = chat.encode_text(chat.prompt_text(CONVERSATION[:3]))
    assert prompt == theirs.apply_chat_template(CONVERSATION[:3], tokenize=True, add_generation_prompt=True,
                                                return_dict=True)["input_ids"]


@pytest.mark.parametrize("family", FAMILIES)
def test_label_mask_is_exactly_the_assistant_tokens(family, families):
    vocab = families[family][0]
    ids, weights = ChatTemplate.from_vocabulary(vocab).encode_conversation(CONVERSATION)
    labelled = [i for i, w in zip(ids, weights) if w == 1]
    expected = []
    for m in CONVERSATION[1::2]:  # each assistant turn: its content and its end-of-turn token(s), nothing else
        expected += vocab.encode(m["content"]) + vocab.encode(END_OF_TURN[family])
    assert labelled == expected
    assert set(weights) == {0.0, 1.0}
    # the role headers and the user turns are not trained on
    assert vocab.decode([i for i, w in zip(ids, weights) if w == 0]).count("Multiply") == 2


def test_turns_from_pieces_keep_the_paper_text_unchanged():
    info = TASKS_BY_NAME["mini_bench_niv2_multiply"]
    rows = generate_task("mini_bench_niv2_multiply")["train"][:3]
    delim = draw_delimiter(info.name, rows[2]["id"])
    pieces = layout(info, rows[2], rows[:2], delimiter=delim)
    messages, labelled = turns_from_pieces(pieces)
    assert [m["role"] for m in messages] == ["user", "assistant"] * 3
    assert labelled == [False, False, False, False, False, True]
    # the definition opens the first user turn; each turn is the plain format's block without the separator
    assert messages[0]["content"] == pieces[0].text
    assert messages[0]["content"].startswith(rows[2]["instruction"].strip())
    assert messages[2]["content"] == pieces[2].text[len(DEFAULT_SEPARATOR):]
    assert messages[4]["content"].endswith(delim) and rows[2]["input"] in messages[4]["content"]
    assert [m["content"] for m in messages[1::2]] == [r["target"] for r in rows]


def _segments(batch):
    for r in range(batch["decoder_segment_ids"].shape[0]):
        seg = batch["decoder_segment_ids"][r]
        for s in range(1, int(seg.max()) + 1):
            at = seg == s
            yield batch["decoder_input_tokens"][r][at], batch["decoder_target_tokens"][r][at], \
                batch["decoder_loss_weights"][r][at]


@pytest.mark.parametrize("family", FAMILIES)
def test_training_rows_are_conversations_with_loss_on_the_assistant_turn(family, families):
    from optiml_jax.tasks.preprocessors import format_texts

    vocab, names, mixture = families[family]
    ids = special_ids_of(vocab)
    chat = ChatTemplate.from_vocabulary(vocab)
    expected = set()  # every example as a one-turn conversation: user = the paper's formatted text, unchanged
    for name in TASKS:
        info = registry.get_task(names[name]).info
        for ex in generate_task(name)["train"][:40]:
            source, _ = format_texts(info, ex)
            expected.add(tuple(chat.encode_conversation([user(source), assistant(ex["target"])])[0]))
    stream = TrainStream(mixture, {"targets": 256}, batch_size=4, seed=3, use_chat_template=True)
    n = 0
    for step in range(2):
        for inputs, tgt, w in _segments(stream.get_batch(step)):
            full = [int(inputs[0])] + [int(t) for t in tgt]  # with a bos: input 0 is it; without: the first token
            assert tuple(full) in expected
            if ids.bos is not None:
                assert inputs[0] == ids.bos and tgt[0] != ids.bos  # the template's bos is the segment's bos, once
            text = vocab.tokenizer.decode(full, skip_special_tokens=False)
            label = vocab.tokenizer.decode([int(t) for t, x in zip(tgt, w) if x == 1], skip_special_tokens=False)
            assert text.count(GENERATION_PROMPT[family]) == 1
            assert text.endswith(GENERATION_PROMPT[family] + label) and label.endswith(END_OF_TURN[family])
            assert (w == 1).sum() == len(vocab.encode(label)) and w[-1] == 1  # one contiguous labelled tail
            assert np.all(w[len(w) - int((w == 1).sum()):] == 1)
            n += 1
    assert n > 4
    plain = TrainStream(mixture, {"targets": 256}, batch_size=4, seed=3)
    assert not np.array_equal(plain.get_batch(0)["decoder_target_tokens"], stream.get_batch(0)["decoder_target_tokens"])


def test_metaicl_demonstrations_are_earlier_turns(families):
    vocab, names, mixture = families["llama3"]
    stream = TrainStream(names["mini_bench_niv2_multiply"], {"targets": 512}, batch_size=2, seed=0,
                         use_chat_template=True, metaicl=MetaICLConfig(share=1.0, max_shots=3, zipf_a=0.01))
    turns = []
    for _, tgt, w in _segments(stream.get_batch(0)):
        text = vocab.tokenizer.decode([int(t) for t in tgt], skip_special_tokens=False)
        turns.append(text.count("<|start_header_id|>assistant"))
        label = vocab.tokenizer.decode([int(t) for t, x in zip(tgt, w) if x == 1], skip_special_tokens=False)
        assert label.count("<|eot_id|>") == 1 and text.endswith(label)  # loss on the last assistant turn only
        first_user = text.split("<|eot_id|>")[0]
        assert generate_task("mini_bench_niv2_multiply")["train"][0]["instruction"].strip()[:30] in first_user
    assert max(turns) > 1, turns


def test_a_tokenizer_without_a_chat_template_is_refused_naming_it_and_the_macro():
    from optiml_jax.tasks.mini_bench.tokenizer import TOKENIZER_DIR
    from optiml_jax.vocabularies import OPTVocabulary

    with pytest.raises(ChatTemplateError, match=rf"USE_CHAT_TEMPLATE = True, but the tokenizer .*{TOKENIZER_DIR.name}"):
        ChatTemplate.from_vocabulary(OPTVocabulary(TOKENIZER_DIR))
