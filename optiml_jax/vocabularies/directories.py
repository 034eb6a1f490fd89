"""`load_vocabulary(directory)`: the SeqIO vocabulary a tokenizer directory describes, OPT's or any other family's.

Why one function: the eval/infer CLIs, the lm-eval adapter and the trainer all open "the tokenizer beside the
checkpoint", and a Llama 3 / Qwen2 / Mistral `tokenizer.json` read as OPT's BPE would silently get OPT's special ids.

  * `vocab.json` + `merges.txt` (metaseq / facebook/opt-* / the mini-benchmark), or a `tokenizer.json` whose
    first ids are fairseq's `<s>`, `<pad>`, `</s>`, `<unk>` (0..3, OPT's order): `OPTVocabulary`.
  * any other `tokenizer.json`: `HFTokenizerVocabulary` (its own bos / eos / pad, chat template).
"""

from __future__ import annotations

import json
import os
import pathlib

from optiml_jax.vocabularies import special_tokens
from optiml_jax.vocabularies.tokenizer_files import OPTVocabularyError

TOKENIZER_JSON = "tokenizer.json"


def is_opt_tokenizer_dir(directory: str | os.PathLike) -> bool:
    """True when the directory holds OPT's byte-level BPE layout (see the module docstring)."""
    d = pathlib.Path(directory)
    if (d / "vocab.json").is_file() and (d / "merges.txt").is_file() and not (d / TOKENIZER_JSON).is_file():
        return True
    try:
        spec = json.loads((d / TOKENIZER_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    vocab = dict((spec.get("model") or {}).get("vocab") or {})
    vocab.update({t.get("content"): t.get("id") for t in spec.get("added_tokens") or [] if isinstance(t, dict)})
    return all(vocab.get(token) == i for i, token in enumerate(special_tokens.SPECIAL_TOKENS))


def load_vocabulary(directory: str | os.PathLike):
    """`OPTVocabulary` or `HFTokenizerVocabulary` for a tokenizer directory (see the module docstring)."""
    d = pathlib.Path(directory).expanduser()
    if is_opt_tokenizer_dir(d):
        from optiml_jax.vocabularies.opt_vocabulary import OPTVocabulary

        return OPTVocabulary(d)
    if (d / TOKENIZER_JSON).is_file():
        from optiml_jax.vocabularies.hf_tokenizer_vocabulary import HFTokenizerVocabulary

        return HFTokenizerVocabulary(d)
    raise OPTVocabularyError(f"{d}: no tokenizer (need vocab.json + merges.txt, or {TOKENIZER_JSON})")
