"""A tiny training run with USE_CHAT_TEMPLATE (issue 22, chat templates): a Llama-family model fine-tunes a few
steps on a mini mixture in a Llama-3-shaped tokenizer's chat conversations, every batch's loss falls on the
assistant's turns only, and the trained parameters evaluate through the same template. Slow (one training compile,
one scoring and one generation compile)."""

import dataclasses
import functools

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
from optiml_jax.vocabularies.chat_template import ChatTemplate
from optiml_jax.vocabularies.special_ids import special_ids_of

TASKS = ("mini_bench_niv2_multiply", "mini_bench_flan_sentiment")


@pytest.mark.slow
def test_tiny_chat_training_run_and_its_evaluation(train_kwargs, tmp_path):
    from optiml_jax.evaluation import DecoderOnlyModel
    from optiml_jax.evaluation.eval_tasks import EvalTask
    from optiml_jax.evaluation.evaluator import evaluate_task
    from optiml_jax.models import LlamaConfig

    texts = [t for n in TASKS for ex in generate_task(n)["train"][:200]
             for t in (ex["instruction"], ex["input"], " " + ex["target"])]
    vocab = HFTokenizerVocabulary(write_family_tokenizer(tmp_path / "tok", "llama3", texts))
    names = []
    for name in TASKS:
        info = dataclasses.replace(TASKS_BY_NAME[name], name=f"chat_train_{name}")
        registry.register_instruction_task(info, {"train": lambda n=name: generate_task(n)["train"][:100]}, vocab,
                                           replace=True)
        names.append(info.name)
    mixtures.register_rate_mixture("chat_train_mixture", {n: 1.0 for n in names})
    ids = special_ids_of(vocab)
    eot = vocab.tokenizer.token_to_id("<|eot_id|>")
    config = LlamaConfig.preset("tiny", vocab_size=ids.vocab_size, dtype="float32", dropout_rate=0.0,
                                max_position_embeddings=256, bos_token_id=ids.bos, eos_token_id=ids.eos_id)
    fed = []

    def recording_stream(**kwargs):
        stream = functools.partial(get_train_stream, use_chat_template=True)(**kwargs)
        get_batch = stream.get_batch
        stream.get_batch = lambda step: fed.append(get_batch(step)) or fed[-1]
        return stream

    result = train(**train_configs(**{**train_kwargs, "mixture_or_task_name": "chat_train_mixture", "model_config": config,
                      "train_steps": 3, "task_feature_lengths": {"targets": 128}, "stream_factory": recording_stream,
                      "learning_rate": 3e-3}))
    assert result.final_step == 3
    losses = [r["loss"] for r in result.history if "loss" in r]
    assert losses and all(np.isfinite(losses))
    assert fed
    for batch in fed:
        assert_batch_contract(batch, special_ids=ids, ends_with_eos=False)
        seg, w, tgt = batch["decoder_segment_ids"], batch["decoder_loss_weights"], batch["decoder_target_tokens"]
        for r in range(seg.shape[0]):
            for s in range(1, int(seg[r].max()) + 1):
                at = np.flatnonzero(seg[r] == s)
                assert tgt[r, at[-1]] == eot and w[r, at[-1]] == 1  # each example ends with the assistant's turn
                assert w[r, at[0]] == 0  # and starts with the user's, not trained on

    from optiml_jax.checkpoints.resolve import load_checkpoint

    config, params = load_checkpoint(train_kwargs["model_dir"])
    model = DecoderOnlyModel(config, params, vocab, max_new_tokens=8, chat_template=ChatTemplate.from_vocabulary(vocab))
    for name in TASKS:
        data = generate_task(name)
        task = EvalTask(TASKS_BY_NAME[name], data["validation"][:4], demonstrations=data["train"][:20])
        record, rows = evaluate_task(model, task, 1)
        assert record["num_examples"] == 4 and np.isfinite(record["score"])
        assert all(r["source"].endswith("<|start_header_id|>assistant<|end_header_id|>\n\n") for r in rows)
        assert all(r["source"].count("<|start_header_id|>user") == 2 for r in rows)  # 1 demonstration + the example
    # the SeqIO path (seqio.Evaluator over the tasks' own metric_fns) through the same template, zero-shot
    from optiml_jax.evaluation.seqio_eval import evaluate_mixture_or_task

    seqio_results = evaluate_mixture_or_task(model, "chat_train_mixture", output_dir=tmp_path / "eval", step=3,
                                             split="train", num_examples=3, max_new_tokens=4)
    assert set(seqio_results) == set(names) and all(np.isfinite(v) for r in seqio_results.values() for v in r.values())
