"""A model config without special ids (the 'tiny' preset) trains in the ids of the run's data: a mixture's
tokenizer (here one shaped like Llama 3's, whose ids are none of OPT's) or the synthetic stream's own, and the run's
model_config.json carries them, so evaluating the run's checkpoint without a vocabulary uses them."""

import dataclasses
import json

from optiml_jax.data import get_train_stream
from optiml_jax.testing.instruction_tasks import tasks_registered_inside
from optiml_jax.testing.train_configs import train_configs
from optiml_jax.training.model_config import opt_config
from optiml_jax.training.train_loop import train

ID_FIELDS = ("bos_token_id", "eos_token_id", "pad_token_id")


def _written_ids(run_dir) -> tuple:
    written = json.loads((run_dir / "model_config.json").read_text())
    return tuple(written[f] for f in ID_FIELDS)


def test_an_opt_model_without_ids_trains_and_evaluates_in_its_tokenizer_s_ids(train_kwargs, tmp_path):
    from optiml_jax.checkpoints.resolve import load_checkpoint
    from optiml_jax.evaluation import DecoderOnlyModel
    from optiml_jax.tasks import mixtures, registry
    from optiml_jax.tasks.mini_bench import TASKS_BY_NAME, generate_task
    from optiml_jax.testing.family_tokenizers import write_family_tokenizer
    from optiml_jax.vocabularies import HFTokenizerVocabulary
    from optiml_jax.vocabularies.special_ids import special_ids_of

    name = "mini_bench_niv2_multiply"
    texts = [t for ex in generate_task(name)["train"][:200] for t in (ex["instruction"], ex["input"], ex["target"])]
    vocab = HFTokenizerVocabulary(write_family_tokenizer(tmp_path / "tok", "llama3", texts))
    ids = special_ids_of(vocab)
    assert ids.pad_from_eos and ids.bos not in (1, 2) and ids.eos_id not in (1, 2)  # no pad token, not OPT's ids
    config = opt_config("tiny", vocab_size=ids.vocab_size, dtype="float32", dropout_rate=0.0)
    assert all(getattr(config, f) is None for f in ID_FIELDS)
    with tasks_registered_inside():
        info = dataclasses.replace(TASKS_BY_NAME[name], name="ids_from_the_run_multiply")
        registry.register_instruction_task(info, {"train": lambda: generate_task(name)["train"]}, vocab)
        mixtures.register_rate_mixture("ids_from_the_run_mixture", {info.name: 1.0})
        result = train(**train_configs(**{**train_kwargs, "mixture_or_task_name": "ids_from_the_run_mixture",
                                          "model_config": config, "stream_factory": get_train_stream,
                                          "task_feature_lengths": {"targets": 128}, "train_steps": 2}))
    assert _written_ids(result.model_dir) == (ids.bos, ids.eos_id, None)  # no pad token: none, not the eos fallback
    trained, params = load_checkpoint(result.model_dir)
    model = DecoderOnlyModel(trained, params)  # no vocabulary: the run's config says the ids
    assert (model.special_ids.bos, model.special_ids.eos, model.special_ids.pad) == (ids.bos, ids.eos, ids.eos_id)


def test_a_synthetic_run_writes_the_ids_its_rows_are_made_of(train_kwargs):
    from optiml_jax.training.synthetic_data import SyntheticStream

    stream_ids = SyntheticStream(4, 32).special_ids
    result = train(**train_configs(**{**train_kwargs, "train_steps": 1}))
    assert _written_ids(result.model_dir) == (stream_ids.bos, stream_ids.eos_id, stream_ids.pad)
    batch = SyntheticStream(4, 32).get_batch(0)
    starts = batch["decoder_positions"] == 0
    assert (batch["decoder_input_tokens"][starts & (batch["decoder_segment_ids"] > 0)] == stream_ids.bos).all()
    assert (batch["decoder_target_tokens"][batch["decoder_segment_ids"] == 0] == stream_ids.pad).all()
