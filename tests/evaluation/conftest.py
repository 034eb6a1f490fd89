"""Shared fixtures: the mini-benchmark tokenizer, a tiny random OPT, and its Hugging Face export."""

import json
import pathlib
import shutil

import jax
import pytest


@pytest.fixture(scope="session")
def mini_vocab():
    from optiml_jax.tasks.mini_bench.registration import VOCABULARY

    return VOCABULARY


@pytest.fixture(scope="session")
def tiny_config(mini_vocab):
    """The tiny preset (no ids of its own) with the mini-benchmark vocabulary's ids, as a run over it writes them."""
    from optiml_jax.models import OPTConfig
    from optiml_jax.vocabularies.special_ids import special_ids_of

    ids = special_ids_of(mini_vocab)
    return OPTConfig.preset("tiny", vocab_size=mini_vocab.vocab_size, dropout_rate=0.0, bos_token_id=ids.bos,
                            eos_token_id=ids.eos_id, pad_token_id=ids.pad)


@pytest.fixture(scope="session")
def tiny_params(tiny_config):
    from optiml_jax.models import init_params

    # A larger init scale than OPT's 0.02 so option scores are well separated (no float ties).
    return jax.tree.map(lambda x: x * 10, init_params(tiny_config.replace(init_std=0.02), jax.random.key(7)))


@pytest.fixture(scope="session")
def tiny_model(tiny_config, tiny_params, mini_vocab):
    from optiml_jax.evaluation import DecoderOnlyModel

    return DecoderOnlyModel(tiny_config, tiny_params, mini_vocab, max_new_tokens=6, score_batch_size=4, predict_batch_size=4)


def write_hf_tokenizer_files(tokenizer_dir: pathlib.Path, out_dir: pathlib.Path) -> None:
    """vocab.json + merges.txt and an OPT-style GPT2Tokenizer config (prepends </s>, as facebook/opt-* does)."""
    for f in ("vocab.json", "merges.txt"):
        shutil.copy(pathlib.Path(tokenizer_dir) / f, out_dir / f)
    special = {"bos_token": "</s>", "eos_token": "</s>", "unk_token": "</s>", "pad_token": "<pad>"}
    (out_dir / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "GPT2Tokenizer", "add_bos_token": True, "add_prefix_space": False, **special}))
    (out_dir / "special_tokens_map.json").write_text(json.dumps(special))


@pytest.fixture(scope="session")
def hf_export(tmp_path_factory, tiny_config, tiny_params):
    """The tiny model saved with save_hf_opt, plus tokenizer files (loadable by transformers and by us)."""
    from optiml_jax.checkpoints import save_hf_opt
    from optiml_jax.tasks.mini_bench.registration import TOKENIZER_DIR

    out = tmp_path_factory.mktemp("hf_export")
    save_hf_opt(tiny_config, tiny_params, out)
    write_hf_tokenizer_files(TOKENIZER_DIR, out)
    return out
