"""HFTokenizerVocabulary against transformers.AutoTokenizer on a Llama-3-style tokenizer built here (no downloads)."""

import json
import pickle

import pytest
import seqio

from optiml_jax.vocabularies import HFTokenizerVocabulary

transformers = pytest.importorskip("transformers")

SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
# Meta's Llama 3 instruct template.
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
# Exercises what transformers' environment provides: namespace, tojson, raise_exception, loopcontrols, trim_blocks /
# lstrip_blocks, tools, extra keyword variables, {% generation %}.
FANCY_TEMPLATE = """{{ bos_token }}
{% set ns = namespace(system='') %}
{% for m in messages %}
    {% if m['role'] == 'system' %}{% set ns.system = m['content'] %}{% continue %}{% endif %}
    {% if m['role'] not in ['user', 'assistant'] %}{{ raise_exception('bad role ' + m['role']) }}{% endif %}
    {% if m['role'] == 'assistant' %}
<|start_header_id|>assistant<|end_header_id|>{% generation %}{{ m['content'] }}{% endgeneration %}<|eot_id|>
    {% else %}
<|start_header_id|>user<|end_header_id|>[{{ ns.system }}|{{ date_string | default('none') }}] {{ m['content'] }}<|eot_id|>
    {% endif %}
{% endfor %}
{% if tools %}TOOLS {{ tools | tojson }}{% endif %}
{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>{% endif %}"""

TEXTS = [
    "Hello world", " leading space", "trailing space ", "Numbers 1234567 and 3.14159!", "", "  two  spaces",
    "Unicode: café, naïve, 東京, emoji 🙂🚀", "new\nlines\r\n\tand tabs", "it's we're they'll I'd",
    "special <|eot_id|> inside text", "<|begin_of_text|>at the start", "punctuation!?.,;:'\"()[]{}",
]
MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "  What is 2+2?  "},
    {"role": "assistant", "content": "4"},
    {"role": "user", "content": "And 3+3 (café)?", "name": None},
]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    corpus = ["The quick brown fox jumps over the lazy dog.", "Hello world, hello there!", "It's 2024; numbers 123.",
              "café au lait and naïve résumé", "What is the answer? The answer is 42."] * 20
    tok.train_from_iterator(corpus, trainer)
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                                       pair="<|begin_of_text|> $A <|begin_of_text|> $B",
                                                       special_tokens=[("<|begin_of_text|>", bos)])
    d = tmp_path_factory.mktemp("llama3_tok")
    tok.save(str(d / "tokenizer.json"))
    (d / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
        "clean_up_tokenization_spaces": True, "model_max_length": 8192, "chat_template": LLAMA3_TEMPLATE,
    }))
    return d


@pytest.fixture(scope="module")
def hf_tok(tokenizer_dir):
    return transformers.AutoTokenizer.from_pretrained(tokenizer_dir)


@pytest.fixture(scope="module")
def vocab(tokenizer_dir):
    return HFTokenizerVocabulary(tokenizer_dir)


def test_ids_and_special_tokens_equal_auto_tokenizer(vocab, hf_tok):
    assert isinstance(vocab, seqio.Vocabulary)
    assert vocab.bos_id == hf_tok.bos_token_id and vocab.eos_id == hf_tok.eos_token_id
    assert vocab.pad_id == vocab.eos_id  # no pad token: pads with eos, as HF generation does
    assert vocab.vocab_size == len(hf_tok)
    for text in TEXTS:
        assert vocab.encode(text) == hf_tok(text, add_special_tokens=False)["input_ids"], text
        assert vocab.encode_with_special_tokens(text) == hf_tok(text)["input_ids"], text
    assert vocab.encode_batch(TEXTS) == [hf_tok(t, add_special_tokens=False)["input_ids"] for t in TEXTS]
    assert vocab.encode_with_special_tokens("Hi")[0] == vocab.bos_id


def test_decode_equals_auto_tokenizer_and_cuts_at_eos(vocab, hf_tok):
    for text in TEXTS:
        ids = hf_tok(text)["input_ids"]
        if vocab.eos_id in ids:  # SeqIO decodes up to the first EOS only
            ids = ids[:ids.index(vocab.eos_id)]
        assert vocab.decode(ids) == hf_tok.decode(ids, skip_special_tokens=True), text
    hello, world = vocab.encode("Hello"), vocab.encode(" world")
    assert vocab.decode(hello + [vocab.eos_id] + world) == "Hello"  # SeqIO: stop at the first EOS
    assert vocab.decode([vocab.vocab_size + 5] + hello) == "Hello"  # ids without a token decode to nothing


@pytest.mark.parametrize("template", ["llama3", "fancy"])
@pytest.mark.parametrize("add_generation_prompt", [False, True])
def test_chat_template_renders_like_apply_chat_template(vocab, hf_tok, template, add_generation_prompt):
    kwargs = {} if template == "llama3" else {"chat_template": FANCY_TEMPLATE, "date_string": "26 Jul 2024"}
    messages = MESSAGES if template == "fancy" else [m for m in MESSAGES if m["role"] != "system"]
    theirs = hf_tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt,
                                        **kwargs)
    ours = vocab.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, **kwargs)
    assert ours == theirs
    assert ours.count("<|eot_id|>") == 3
    their_ids = hf_tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=add_generation_prompt,
                                           return_dict=True, **kwargs)["input_ids"]
    assert vocab.apply_chat_template(messages, tokenize=True, add_generation_prompt=add_generation_prompt,
                                     **kwargs) == their_ids
    tools = [{"type": "function", "function": {"name": "add", "parameters": {"a": "int"}}}]
    if template == "fancy":
        assert (vocab.apply_chat_template(messages, tools=tools, **kwargs)
                == hf_tok.apply_chat_template(messages, tools=tools, tokenize=False, **kwargs))


def test_template_errors_and_missing_template(vocab, tokenizer_dir, tmp_path):
    import jinja2

    with pytest.raises(jinja2.exceptions.TemplateError, match="bad role tool"):
        vocab.apply_chat_template([{"role": "tool", "content": "x"}], chat_template=FANCY_TEMPLATE)
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "tokenizer.json").write_text((tokenizer_dir / "tokenizer.json").read_text())
    plain = HFTokenizerVocabulary(bare)
    assert plain.eos_id is None and plain.chat_template is None
    with pytest.raises(ValueError, match="no chat_template"):
        plain.apply_chat_template(MESSAGES)
    with pytest.raises(ValueError, match="tokenizer.json is missing"):
        HFTokenizerVocabulary(tmp_path)


def test_tf_ops_pickling_and_equality(vocab, tokenizer_dir):
    import tensorflow as tf

    texts = ["Hello world", "café 🙂", ""]
    ragged = vocab.encode_tf(tf.constant(texts))
    assert [row.numpy().tolist() for row in ragged] == [vocab.encode(t) for t in texts]
    assert vocab.encode_tf(tf.constant("Hello")).numpy().tolist() == vocab.encode("Hello")
    dense = tf.constant([vocab.encode("Hello") + [vocab.eos_id, 7], vocab.encode("Hi") + [0, 0, 0]][:1])
    assert vocab.decode_tf(dense).numpy().tolist() == [b"Hello"]
    clone = pickle.loads(pickle.dumps(vocab))
    assert clone == vocab and hash(clone) == hash(vocab) and clone.encode("Hello world") == vocab.encode("Hello world")
    assert HFTokenizerVocabulary(tokenizer_dir, pad_vocab_to_multiple_of=128).vocab_size % 128 == 0
