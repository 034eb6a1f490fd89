"""USE_CHAT_TEMPLATE in evaluation (issue 22, chat templates): the suites' prompts (rank classification and
generation) are the tokenizer's chat template with k-shot demonstrations as earlier turns, ending with the
generation prompt; options are scored as the assistant's turn (content + end-of-turn); generation stops at the
end-of-turn token. A tiny random Llama-family model and a Llama-3-shaped tokenizer are built here."""

import jax
import pytest

from optiml_jax.evaluation import DecoderOnlyModel
from optiml_jax.evaluation.eval_tasks import EvalTask
from optiml_jax.evaluation.evaluator import build_source, evaluate_task
from optiml_jax.models import LlamaConfig, init_model_params
from optiml_jax.tasks.formatting import format_few_shot
from optiml_jax.tasks.mini_bench import TASKS_BY_NAME, generate_task
from optiml_jax.testing.family_tokenizers import write_family_tokenizer
from optiml_jax.vocabularies import HFTokenizerVocabulary
from optiml_jax.vocabularies.chat_template import ChatTemplate, assistant, user
from optiml_jax.vocabularies.special_ids import special_ids_of

GENERATION_PROMPT = "<|start_header_id|>assistant<|end_header_id|>\n\n"
CLASSIFY, GENERATE = "mini_bench_flan_sentiment", "mini_bench_niv2_multiply"


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory):
    texts = [t for n in (CLASSIFY, GENERATE) for ex in generate_task(n)["train"][:100]
             for t in (ex["instruction"], ex["input"], " " + ex["target"])]
    vocab = HFTokenizerVocabulary(write_family_tokenizer(tmp_path_factory.mktemp("tok"), "llama3", texts, bpe_size=400))
    ids = special_ids_of(vocab)
    config = LlamaConfig.preset("tiny", vocab_size=ids.vocab_size, hidden_size=32, num_heads=2, num_kv_heads=1,
                                ffn_dim=64, num_layers=1, max_position_embeddings=512, dtype="float32",
                                bos_token_id=ids.bos, eos_token_id=ids.eos_id)
    params = init_model_params(config, jax.random.key(0))
    chat = ChatTemplate.from_vocabulary(vocab)
    return DecoderOnlyModel(config, params, vocab, score_batch_size=2, predict_batch_size=2, max_new_tokens=6,
                    chat_template=chat), DecoderOnlyModel(config, params, vocab, max_new_tokens=6)


def _task(name, n=3):
    data = generate_task(name)
    return EvalTask(TASKS_BY_NAME[name], data["validation"][:n], demonstrations=data["train"][:20])


def test_prompt_is_the_template_with_demonstrations_as_turns_and_the_generation_prompt(chat_model):
    model, plain = chat_model
    task = _task(GENERATE)
    ex = task.examples[0]
    source = build_source(model, task, ex, 2, reserve=8)
    assert source.startswith("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n")
    assert source.endswith(GENERATION_PROMPT)
    assert source.count("<|start_header_id|>user") == 3 and source.count(GENERATION_PROMPT) == 3  # 2 demos + example
    # the last user turn is the example's input with the paper's delimiter; the plain prompt's text is all there
    plain_source = build_source(plain, task, ex, 2, reserve=8)
    last_user = source.split("<|start_header_id|>user<|end_header_id|>\n\n")[-1].split("<|eot_id|>")[0]
    assert plain_source.endswith(last_user) and ex["input"] in last_user
    zero = build_source(model, task, ex, 0, reserve=8)
    zero_plain, _ = format_few_shot(task.info, ex, [])
    assert zero == model.chat_template.prompt_text([user(zero_plain)])
    transformers = pytest.importorskip("transformers")
    theirs = transformers.AutoTokenizer.from_pretrained(model.vocabulary.path)
    assert model.encode_prompt(zero) == theirs.apply_chat_template(
        [user(zero_plain)], tokenize=True, add_generation_prompt=True, return_dict=True)["input_ids"]


def test_seqio_prompts_and_targets_become_the_template_s_turns(chat_model):
    from optiml_jax.evaluation.seqio_glue import chat_turns

    model, _ = chat_model
    vocab, chat = model.vocabulary, model.chat_template
    text = "Is this review positive? It was great.\nAnswer:"
    prompt = model.special_ids.prompt_prefix + vocab.encode(text)  # what split_prompt_and_target gives
    got_prompt, got_target = chat_turns(model, prompt, vocab.encode(" positive") + [vocab.eos_id])
    full, weights = chat.encode_conversation([user(text), assistant("positive")])
    assert got_prompt + got_target == full  # the conversation training sees
    assert got_target == [i for i, w in zip(full, weights) if w]
    assert vocab.tokenizer.decode(got_prompt, skip_special_tokens=False).endswith(GENERATION_PROMPT)


@pytest.mark.slow  # compiles scoring and generation (~15 s)
def test_options_are_scored_as_the_assistant_turn_and_generation_stops_at_the_end_of_turn(chat_model):
    model, _ = chat_model
    eot = model.vocabulary.tokenizer.token_to_id("<|eot_id|>")
    assert eot in model.special_ids.eos and eot not in special_ids_of(model.vocabulary).eos
    task = _task(CLASSIFY)
    record, rows = evaluate_task(model, task, 0)
    assert record["num_examples"] == 3 and all(r["source"].endswith(GENERATION_PROMPT) for r in rows)
    ex = task.examples[0]
    prompt = model.encode_prompt(rows[0]["source"])
    option = ex["options"][0]
    turn = model.vocabulary.encode(option + "<|eot_id|>")
    # the option's score is the log-likelihood of its assistant turn (content and <|eot_id|>) after the prompt
    (want,) = model.score_token_options([prompt], [[turn]])
    assert rows[0]["option_logprobs"][0] == pytest.approx(want[0][0], abs=1e-5)
    full, weights = model.chat_template.encode_conversation(
        [user(rows[0]["source"].split("\n\n", 1)[1].split("<|eot_id|>")[0]), assistant(option)])
    assert full == prompt + turn and [i for i, w in zip(full, weights) if w] == turn  # what training labels
    (cont,) = model.generate_token_batches([prompt], max_new_tokens=6)
    assert eot not in cont  # cut at the end of turn, like the eos
