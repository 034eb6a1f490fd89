"""`convert` never writes into a non-empty output directory unless --overwrite (and then replaces it only after
the conversion succeeded); `infer` says when a prompt is longer than the model's positions and by how much."""

import json

import gin
import jax
import pytest

from optiml_jax.checkpoints.orbax_params import save_orbax
from optiml_jax.cli import convert, infer
from optiml_jax.models import OPTConfig, init_params


def _vocab():
    """The mini-benchmark tokenizer infer falls back to when the checkpoint has none."""
    from optiml_jax.tasks.mini_bench.tokenizer import TOKENIZER_DIR
    from optiml_jax.vocabularies import OPTVocabulary

    return OPTVocabulary(TOKENIZER_DIR)


@pytest.fixture(autouse=True)
def _clean_gin():
    yield
    gin.clear_config()  # infer locks the parsed config; later tests register configurables


@pytest.fixture(scope="module")
def orbax_dir(tmp_path_factory):
    from optiml_jax.vocabularies.special_ids import special_ids_of

    ids = special_ids_of(_vocab())  # 'tiny' has no ids: the tokenizer's, as a run over it writes them
    config = OPTConfig.preset("tiny", vocab_size=_vocab().vocab_size, dropout_rate=0.0, bos_token_id=ids.bos,
                              eos_token_id=ids.eos_id, pad_token_id=ids.pad)
    out = tmp_path_factory.mktemp("conv") / "orbax"
    save_orbax(config, init_params(config, jax.random.key(0)), out)
    return out, config


def test_convert_refuses_a_non_empty_out_dir_unless_overwrite(orbax_dir, tmp_path, capsys):
    src, config = orbax_dir
    out = tmp_path / "hf"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert convert.main(["orbax-to-hf", "--orbax_dir", str(src), "--out_dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"--out_dir {out} is not empty" in err and "--overwrite" in err and "Traceback" not in err
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and (out / "notes.txt").read_text() == "keep me"
    assert convert.main(["hf-to-orbax", "--hf_dir", str(src), "--out_dir", str(out)]) == 2
    assert convert.main(["orbax-to-hf", "--orbax_dir", str(src), "--out_dir", str(src), "--overwrite"]) == 2
    assert "is (or contains) the input" in capsys.readouterr().err

    assert convert.main(["orbax-to-hf", "--orbax_dir", str(src), "--out_dir", str(out), "--overwrite"]) == 0
    assert not (out / "notes.txt").exists() and json.loads((out / "config.json").read_text())["model_type"] == "opt"
    assert not list(tmp_path.glob("hf.*"))  # no temp or replaced dirs left behind
    back = tmp_path / "back"
    assert convert.main(["hf-to-orbax", "--hf_dir", str(out), "--out_dir", str(back)]) == 0  # new dir: fine
    assert OPTConfig.from_dict(json.loads((back / "config.json").read_text())) == config


def test_orbax_to_hf_refuses_a_config_without_ids_unless_given_a_tokenizer(orbax_dir, tmp_path, capsys):
    """A model config without special ids (e.g. the 'tiny' preset saved bare) has none to export: refused before
    anything is written, naming --tokenizer_dir; with it, the tokenizer's ids are exported."""
    from optiml_jax.tasks.mini_bench.tokenizer import TOKENIZER_DIR
    from optiml_jax.vocabularies.special_ids import special_ids_of

    src, config = orbax_dir
    bare = config.replace(bos_token_id=None, eos_token_id=None, pad_token_id=None)
    save_orbax(bare, init_params(bare, jax.random.key(1)), tmp_path / "bare")
    assert convert.main(["orbax-to-hf", "--orbax_dir", str(tmp_path / "bare"), "--out_dir", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "no eos_token_id" in err and "--tokenizer_dir" in err and "Traceback" not in err
    assert not (tmp_path / "a").exists()
    assert convert.main(["orbax-to-hf", "--orbax_dir", str(tmp_path / "bare"), "--out_dir", str(tmp_path / "b"),
                         "--tokenizer_dir", str(TOKENIZER_DIR)]) == 0
    ids = special_ids_of(_vocab())
    for name in ("generation_config.json", "config.json"):
        written = json.loads((tmp_path / "b" / name).read_text())
        assert (written["bos_token_id"], written["eos_token_id"], written["pad_token_id"]) == (
            ids.bos, ids.eos_id, ids.pad), name


def test_infer_says_it_truncated_a_long_prompt_and_by_how_much(orbax_dir, capsys):
    src, config = orbax_dir
    long_prompt = "reverse the words " * 200
    n = len(_vocab().encode(long_prompt))
    assert n + 1 > config.max_position_embeddings - 2
    rc = infer.main([f"--gin.CHECKPOINT_PATH={src}", "--gin.MAX_NEW_TOKENS=2", "--prompt", long_prompt,
                     "--prompt", "short", "--jsonl"])
    assert rc == 0
    captured = capsys.readouterr()
    room = config.max_position_embeddings - 2
    [warning] = [x for x in captured.err.splitlines() if x.startswith("warning:")]
    assert warning.startswith(f"warning: prompt 1: {n} tokens (+ </s>) do not fit the model's 512 positions")
    assert f"dropping its first {n + 1 - room} tokens and keeping the last {room - 1}" in warning
    assert len([x for x in captured.out.splitlines() if x.startswith('{"prompt"')]) == 2
