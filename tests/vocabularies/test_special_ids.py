"""One source of special ids (issue 22): `SpecialIds` read from the run's vocabulary, and no special-id constant
anywhere in the package outside `optiml_jax/vocabularies/` (a source scan that fails on a new one), except the
published presets' ids (copied from their hub config.json) and the synthetic stream's own id layout, an
allow-list that is itself checked (every entry must still be found). The config classes have no default ids."""

import ast
import pathlib
import re

import pytest

from optiml_jax.vocabularies.special_ids import SpecialIds, opt_special_ids, special_ids_of, special_ids_of_config

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "optiml_jax"
OPT_NAMES = {"BOS_ID", "EOS_ID", "PAD_ID", "UNK_ID", "S_ID"}
ID_NAME = re.compile(r"(^|_)(bos|eos|eot|pad|unk|prefix)(_token)?_ids?$", re.IGNORECASE)
# As (file, line text): the published presets' hub ids (facebook/opt-* and meta-llama/* config.json), and the
# synthetic stream's ids (random tokens, no tokenizer: the stream defines them and reports them as `special_ids`).
ALLOWED = {
    ("models/config.py", "pad_token_id=1"),
    ("models/config.py", "bos_token_id=2"),
    ("models/config.py", "eos_token_id=2"),
    ("models/llama_config.py", "bos_token_id=128000"),
    ("models/llama_config.py", "eos_token_id=128001"),
    ("training/synthetic_data.py", "SYNTHETIC_PAD_ID=0"),
    ("training/synthetic_data.py", "SYNTHETIC_BOS_ID=1"),
    ("training/synthetic_data.py", "SYNTHETIC_EOS_ID=2"),
}


def _int(node) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool)


def special_id_constants(source: str) -> list[tuple[int, str]]:
    """(line, what) of every special-id constant in `source`: an import of OPT's id names, an int assigned to an
    id-named variable or field, an int default of an id-named parameter, an int passed as an id-named keyword, an
    int fallback of `mapping.get("<id name>", ...)`, an id-named function or property that returns an int."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            found += [(node.lineno, f"import {a.name}") for a in node.names if a.name in OPT_NAMES]
        elif isinstance(node, ast.Attribute) and node.attr in OPT_NAMES:
            found.append((node.lineno, f"attribute {node.attr}"))
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None and _int(node.value):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            found += [(node.lineno, f"{t.id}={node.value.value}") for t in targets
                      if isinstance(t, ast.Name) and ID_NAME.search(t.id)]
        elif isinstance(node, ast.keyword) and node.arg and ID_NAME.search(node.arg) and _int(node.value):
            found.append((node.lineno, f"{node.arg}={node.value.value}"))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
              and len(node.args) == 2 and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str) and ID_NAME.search(node.args[0].value) and _int(node.args[1])):
            found.append((node.lineno, f"get({node.args[0].value!r}, {node.args[1].value})"))
        elif isinstance(node, ast.FunctionDef) and ID_NAME.search(node.name):
            found += [(r.lineno, f"{node.name} returns {r.value.value}") for r in ast.walk(node)
                      if isinstance(r, ast.Return) and r.value is not None and _int(r.value)]
        elif isinstance(node, ast.arguments):
            positional = node.posonlyargs + node.args
            pairs = list(zip(positional[len(positional) - len(node.defaults):], node.defaults))
            pairs += [(a, d) for a, d in zip(node.kwonlyargs, node.kw_defaults) if d is not None]
            found += [(d.lineno, f"{a.arg}={d.value}") for a, d in pairs if ID_NAME.search(a.arg) and _int(d)]
    return found


def test_the_scan_finds_each_kind_of_constant():
    src = ("from optiml_jax.vocabularies.special_tokens import BOS_ID\nPAD_ID = 1\nx = special_tokens.EOS_ID\n"
           "def f(a, eos_id=2, *, pad_id: int = 1): pass\ng(bos_token_id=2)\nclass C:\n    eos_token_id: int = 2\n"
           "ok = f(eos_id=vocab.eos_id, pad_id=None)\nhf.get('pad_token_id', 1)\n"
           "class M:\n    @property\n    def eot_token_id(self):\n        return 2\n")
    assert sorted(special_id_constants(src)) == [
        (1, "import BOS_ID"), (2, "PAD_ID=1"), (3, "attribute EOS_ID"), (4, "eos_id=2"), (4, "pad_id=1"),
        (5, "bos_token_id=2"), (7, "eos_token_id=2"), (9, "get('pad_token_id', 1)"), (13, "eot_token_id returns 2")]


def test_no_special_id_constant_outside_vocabularies():
    found, allowed_hits = [], set()
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith("vocabularies/"):
            continue
        for line, what in special_id_constants(path.read_text(encoding="utf-8")):
            if (rel, what) in ALLOWED:
                allowed_hits.add((rel, what))
            else:
                found.append(f"optiml_jax/{rel}:{line}: {what}")
    assert not found, ("special ids must come from the run's vocabulary (optiml_jax.vocabularies.special_ids), "
                       f"not constants: {found}")
    assert allowed_hits == ALLOWED, f"allow-list entries no longer found (remove them): {ALLOWED - allowed_hits}"


def test_opt_vocabulary_ids(small_tokenizer_dir):
    from optiml_jax.vocabularies import OPTVocabulary

    vocab = OPTVocabulary(small_tokenizer_dir)
    ids = special_ids_of(vocab)
    assert ids == opt_special_ids(vocab.vocab_size)
    assert (ids.bos, ids.eos, ids.pad, ids.prompt_prefix) == (2, (2,), 1, [2])  # OPT: </s> starts and ends


def test_config_fallback_and_stop_ids():
    from optiml_jax.models import LlamaConfig

    ids = special_ids_of_config(LlamaConfig.preset("tiny", bos_token_id=5, eos_token_id=(6, 7), pad_token_id=None,
                                                   vocab_size=64))
    assert (ids.bos, ids.eos, ids.pad, ids.pad_from_eos) == (5, (6, 7), 6, True)
    assert ids.with_stop_ids([7, 9]).eos == (6, 7, 9)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        SpecialIds(1, (70,), 0, vocab_size=64)
    with pytest.raises(ValueError, match="at least one eos"):
        SpecialIds(1, (), 0)


def test_load_vocabulary_picks_the_family(small_tokenizer_dir, tmp_path):
    from optiml_jax.testing.family_tokenizers import write_family_tokenizer
    from optiml_jax.vocabularies import HFTokenizerVocabulary, OPTVocabulary
    from optiml_jax.vocabularies.directories import load_vocabulary

    assert isinstance(load_vocabulary(small_tokenizer_dir), OPTVocabulary)
    llama = load_vocabulary(write_family_tokenizer(tmp_path / "l3", "llama3", ["hello world"] * 20, bpe_size=300))
    assert isinstance(llama, HFTokenizerVocabulary)
    assert special_ids_of(llama).bos == llama.tokenizer.token_to_id("<|begin_of_text|>")


def test_seqio_vocabularies_without_a_bos():
    """seqio's base Vocabulary raises NotImplementedError for bos_id: such a vocabulary is a family without a bos."""
    import seqio

    ids = special_ids_of(seqio.PassThroughVocabulary(64, eos_id=1))
    assert (ids.bos, ids.eos, ids.pad, ids.vocab_size) == (None, (1,), 0, 64)
