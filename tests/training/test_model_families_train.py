"""Fine-tuning in each model family's own ids (issue 22), end to end: a tiny Llama / Qwen2 / Mistral-architecture
model trains a few steps on a mini mixture registered with a tokenizer shaped like its family's (built here), every
batch it was fed is made of the family's sequences (bos or none first, eos last), and the trained parameters,
exported with the run's special ids and the tokenizer files, generate in transformers what our evaluation generates.
Slow (tests/slow_tests.txt): one training compile and one transformers load per family."""

import dataclasses
import shutil

import numpy as np
import pytest

from optiml_jax.testing.train_configs import train_configs
from optiml_jax.data import get_train_stream
from optiml_jax.tasks import mixtures, registry
from optiml_jax.tasks.mini_bench import TASKS_BY_NAME, generate_task
from optiml_jax.testing import assert_batch_contract
from optiml_jax.testing.family_tokenizers import write_family_tokenizer
from optiml_jax.training.train_loop import train
from optiml_jax.vocabularies import HFTokenizerVocabulary
from optiml_jax.vocabularies.special_ids import special_ids_of

TASKS = ("mini_bench_niv2_multiply", "mini_bench_flan_sentiment")
MODEL_TYPE = {"llama3": "llama", "qwen2": "qwen2", "mistral": "mistral"}


def _register(family, tmp_path):
    texts = [t for n in TASKS for ex in generate_task(n)["train"][:200] for t in (ex["instruction"], ex["input"],
                                                                               " " + ex["target"])]
    tok_dir = write_family_tokenizer(tmp_path / "tok", family, texts)
    vocab = HFTokenizerVocabulary(tok_dir)
    names = []
    for name in TASKS:
        info = dataclasses.replace(TASKS_BY_NAME[name], name=f"train_{family}_{name}")
        registry.register_instruction_task(info, {"train": lambda n=name: generate_task(n)["train"]}, vocab,
                                           replace=True)
        names.append(info.name)
    mixtures.register_rate_mixture(f"train_{family}_mixture", {n: 1.0 for n in names})
    return f"train_{family}_mixture", tok_dir, vocab


@pytest.mark.parametrize("family", list(MODEL_TYPE))
def test_fine_tune_export_and_generate_in_the_family_s_ids(family, train_kwargs, tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from optiml_jax.checkpoints.families import save_hf
    from optiml_jax.checkpoints.resolve import load_checkpoint
    from optiml_jax.evaluation import DecoderOnlyModel
    from optiml_jax.models import LlamaConfig

    mixture, tok_dir, vocab = _register(family, tmp_path)
    ids = special_ids_of(vocab)
    kind = MODEL_TYPE[family]
    config = LlamaConfig.preset("tiny", vocab_size=ids.vocab_size, dtype="float32", dropout_rate=0.0,
                                max_position_embeddings=256, hf_model_type=kind, attention_bias=kind == "qwen2",
                                tie_word_embeddings=kind == "qwen2", bos_token_id=ids.bos, eos_token_id=ids.eos_id,
                                pad_token_id=None if ids.pad_from_eos else ids.pad)
    fed = []

    def recording_stream(**kwargs):
        stream = get_train_stream(**kwargs)
        get_batch = stream.get_batch

        def get_batch_recorded(step):
            batch = get_batch(step)
            fed.append(batch)
            return batch

        stream.get_batch = get_batch_recorded
        return stream

    result = train(**train_configs(**{**train_kwargs, "mixture_or_task_name": mixture, "model_config": config, "train_steps": 3,
                      "task_feature_lengths": {"targets": 128}, "stream_factory": recording_stream,
                      "learning_rate": 3e-3}))
    assert result.final_step == 3
    losses = [r["loss"] for r in result.history if "loss" in r]
    assert losses and all(np.isfinite(losses))
    assert fed, "the trainer read no batch through the stream"
    for batch in fed:  # every segment starts with the family's bos (or none) and ends with its eos
        assert_batch_contract(batch, special_ids=ids)

    # export the trained parameters with the run's ids and the tokenizer: transformers generates what we generate
    trained_config, params = load_checkpoint(result.model_dir)
    ours = DecoderOnlyModel(trained_config, params, vocab, max_new_tokens=6, predict_batch_size=1)
    prompt = "Multiply the two numbers and give the product.\n\nInput: What is 3 * 4?"
    (cont,) = ours.generate_token_batches([ours.encode_prompt(prompt, reserve=6)], max_new_tokens=6)
    out = save_hf(trained_config, params, tmp_path / "export", special_ids=ours.special_ids)
    for f in tok_dir.iterdir():
        shutil.copy(f, out / f.name)
    tok = transformers.AutoTokenizer.from_pretrained(out)
    hf = transformers.AutoModelForCausalLM.from_pretrained(out, attn_implementation="eager").eval()
    input_ids = torch.tensor([tok(prompt).input_ids])
    assert input_ids[0].tolist() == ours.encode_prompt(prompt)
    generated = hf.generate(input_ids, max_new_tokens=6, do_sample=False)[0, input_ids.shape[1]:].tolist()
    stops = [i for i, t in enumerate(generated) if t in ids.eos]
    assert (generated[:stops[0]] if stops else generated) == cont
