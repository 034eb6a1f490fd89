"""Loading OPT's byte-level BPE from a local directory into a `tokenizers.Tokenizer` (no TensorFlow, no SeqIO).

Why a separate module: the model, conversion and evaluation code may need OPT's token ids without pulling in
TensorFlow; only `OPTVocabulary` (the SeqIO wrapper) needs TF. Everything that decides *which* ids a text gets
lives here, so the SeqIO wrapper and any TF-free user tokenize identically.

Directory layout accepted (checked in this order):
  * `vocab.json` + `merges.txt` (GPT-2/RoBERTa/OPT layout, as in metaseq's `projects/OPT/assets`), or
  * `tokenizer.json` (a Hugging Face `tokenizers` file whose model is BPE; only its vocab and merges are used,
    the rest of the pipeline is rebuilt below so the ids are the same whichever layout is given).

Pipeline (identical to `transformers.GPT2Tokenizer` loaded with OPT's published special-token config,
`bos/eos/unk = "</s>"`, `pad = "<pad>"`, encoding with `add_special_tokens=False`):
  split literal special-token text (`"</s>"`, `"<pad>"` by default) out of the input -> GPT-2 regex
  pre-tokenization + byte-to-unicode mapping (`ByteLevel(add_prefix_space=False)`) -> BPE merges.
No BOS/EOS is added by encoding: SeqIO appends EOS itself and OPT's BOS (`</s>`) is the feature converter's job.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Iterable, Mapping, Sequence

import tokenizers
from tokenizers import decoders, models, pre_tokenizers

from optiml_jax.paths import user_path
from optiml_jax.vocabularies.special_tokens import BOS_ID, EOS_ID, PAD_ID, SPECIAL_TOKENS, UNK_ID  # noqa: F401 (re-exported)

# Tokens whose literal appearance in input text is encoded as the token's id instead of being BPE-split.
# This is what Hugging Face's OPT tokenizer does (its special tokens are "</s>" and "<pad>"; "<s>", "<unk>"
# and "<mask>" are ordinary text to it). Pass `literal_special_tokens=()` to treat all text as plain text.
HF_OPT_LITERAL_SPECIAL_TOKENS: tuple[str, ...] = ("</s>", "<pad>")

# OPT pads its embedding table from 50,265 entries to 50,272 (a multiple of 8) for matmul efficiency.
DEFAULT_PAD_VOCAB_TO_MULTIPLE_OF = 8

VOCAB_FILE = "vocab.json"
MERGES_FILE = "merges.txt"
TOKENIZER_FILE = "tokenizer.json"


class OPTVocabularyError(ValueError):
    """A tokenizer directory is missing, incomplete or malformed. The message names the path and the file."""


def padded_vocab_size(num_entries: int, multiple_of: int) -> int:
    """`num_entries` rounded up to a multiple of `multiple_of` (the model's embedding rows; 1 = no padding).

    OPT: 50,265 entries, multiple 8 -> 50,272. Ids in [num_entries, padded) have no token: they can only come out
    of a model, never out of `encode`, and decode to nothing.
    """
    if int(multiple_of) != multiple_of or multiple_of < 1:
        raise ValueError(f"pad_vocab_to_multiple_of must be a positive integer, got {multiple_of!r}")
    if num_entries < 0:
        raise ValueError(f"num_entries must be >= 0, got {num_entries}")
    return -(-num_entries // multiple_of) * multiple_of


def _fail(path: pathlib.Path, problem: str) -> OPTVocabularyError:
    return OPTVocabularyError(f"{path}: {problem}")


def _read_vocab_json(directory: pathlib.Path) -> dict[str, int]:
    vocab_path = directory / VOCAB_FILE
    try:
        vocab = json.loads(vocab_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _fail(directory, f"cannot read {VOCAB_FILE} ({type(e).__name__}: {e})") from e
    return _check_vocab(directory, VOCAB_FILE, vocab)


def _check_vocab(directory: pathlib.Path, file_name: str, vocab: object) -> dict[str, int]:
    if not isinstance(vocab, dict) or not vocab:
        raise _fail(directory, f"malformed {file_name}: expected a non-empty JSON object {{token: id}}")
    bad = [(k, v) for k, v in vocab.items() if not isinstance(v, int) or isinstance(v, bool) or v < 0]
    if bad:
        raise _fail(directory, f"malformed {file_name}: ids must be non-negative integers, e.g. {bad[0]!r}")
    if len(set(vocab.values())) != len(vocab):
        raise _fail(directory, f"malformed {file_name}: two tokens share an id")
    for expected_id, token in enumerate(SPECIAL_TOKENS):
        if vocab.get(token) != expected_id:
            raise _fail(
                directory,
                f"{file_name} does not have OPT's special ids (<s>=0 <pad>=1 </s>=2 <unk>=3): "
                f"{token!r} has id {vocab.get(token)!r}",
            )
    return vocab


def _read_merges_txt(directory: pathlib.Path) -> list[tuple[str, str]]:
    merges_path = directory / MERGES_FILE
    try:
        lines = merges_path.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as e:
        raise _fail(directory, f"cannot read {MERGES_FILE} ({type(e).__name__}: {e})") from e
    merges = []
    for line_number, line in enumerate(lines, start=1):
        if line_number == 1 and line.startswith("#version"):
            continue
        if not line.strip():
            continue
        parts = line.split(" ")
        if len(parts) != 2 or not all(parts):
            raise _fail(directory, f"malformed {MERGES_FILE} line {line_number}: {line[:80]!r} (want 'left right')")
        merges.append((parts[0], parts[1]))
    return merges


def _read_tokenizer_json(directory: pathlib.Path) -> tuple[dict[str, int], list[tuple[str, str]]]:
    path = directory / TOKENIZER_FILE
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _fail(directory, f"cannot read {TOKENIZER_FILE} ({type(e).__name__}: {e})") from e
    model = spec.get("model") if isinstance(spec, dict) else None
    if not isinstance(model, dict) or model.get("type") != "BPE":
        kind = model.get("type") if isinstance(model, dict) else None
        raise _fail(directory, f"malformed {TOKENIZER_FILE}: model type {kind!r}, need a byte-level 'BPE' model")
    vocab = _check_vocab(directory, TOKENIZER_FILE, model.get("vocab"))
    merges = []
    for i, merge in enumerate(model.get("merges") or []):
        # tokenizers < 0.20 writes "left right" strings, newer versions [left, right] pairs.
        pair = merge.split(" ") if isinstance(merge, str) else merge
        if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not all(isinstance(p, str) and p for p in pair):
            raise _fail(directory, f"malformed {TOKENIZER_FILE}: merge #{i} is {merge!r}")
        merges.append((pair[0], pair[1]))
    return vocab, merges


def _check_merges_in_vocab(directory: pathlib.Path, vocab: Mapping[str, int], merges: Sequence[tuple[str, str]]):
    for i, (left, right) in enumerate(merges):
        if left not in vocab or right not in vocab or left + right not in vocab:
            raise _fail(
                directory,
                f"merge #{i} ({left!r} {right!r}) uses or makes a token missing from the vocabulary "
                "(vocab.json and merges.txt do not belong together?)",
            )


def read_vocab_and_merges(path: str | os.PathLike) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Reads and validates the BPE vocabulary and merges of a tokenizer directory.

    Raises:
      OPTVocabularyError: naming `path` and the missing or broken file.
    """
    directory = user_path(path, "TOKENIZER_DIR")
    if not directory.is_dir():
        what = "is not a directory" if directory.exists() else "does not exist"
        raise _fail(directory, f"tokenizer directory {what} (need {VOCAB_FILE} + {MERGES_FILE}, or {TOKENIZER_FILE})")
    has_vocab = (directory / VOCAB_FILE).is_file()
    has_merges = (directory / MERGES_FILE).is_file()
    if has_vocab and has_merges:
        vocab, merges = _read_vocab_json(directory), _read_merges_txt(directory)
    elif (directory / TOKENIZER_FILE).is_file():
        vocab, merges = _read_tokenizer_json(directory)
    else:
        missing = " and ".join(name for name, ok in ((VOCAB_FILE, has_vocab), (MERGES_FILE, has_merges)) if not ok)
        raise _fail(directory, f"missing {missing} (need {VOCAB_FILE} + {MERGES_FILE}, or {TOKENIZER_FILE})")
    _check_merges_in_vocab(directory, vocab, merges)
    alphabet = set(pre_tokenizers.ByteLevel.alphabet())
    missing_bytes = alphabet.difference(vocab)
    if missing_bytes:
        raise _fail(
            directory,
            f"not a byte-level BPE: {len(missing_bytes)} of the 256 byte symbols are not in the vocabulary "
            f"(e.g. {sorted(missing_bytes)[0]!r})",
        )
    return vocab, merges


def build_byte_level_bpe(
    vocab: Mapping[str, int],
    merges: Sequence[tuple[str, str]],
    literal_special_tokens: Iterable[str] = HF_OPT_LITERAL_SPECIAL_TOKENS,
) -> tokenizers.Tokenizer:
    """A `tokenizers.Tokenizer` with GPT-2's byte-level BPE pipeline and no post-processor (adds no BOS/EOS)."""
    tokenizer = tokenizers.Tokenizer(
        models.BPE(
            vocab=dict(vocab),
            merges=list(merges),
            dropout=None,
            continuing_subword_prefix="",
            end_of_word_suffix="",
            fuse_unk=False,
        )
    )
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    literal = list(literal_special_tokens)
    unknown = [t for t in literal if t not in vocab]
    if unknown:
        raise ValueError(f"literal_special_tokens {unknown} are not in the vocabulary")
    if literal:
        # normalized=False + no strip: the token matches only its exact text; the surrounding text (including a
        # preceding space, which becomes its own "Ġ" token) is BPE'd on its own, as Hugging Face does.
        tokenizer.add_special_tokens(
            [tokenizers.AddedToken(t, special=True, normalized=False, lstrip=False, rstrip=False) for t in literal]
        )
    return tokenizer


def load_opt_tokenizer(
    path: str | os.PathLike, literal_special_tokens: Iterable[str] = HF_OPT_LITERAL_SPECIAL_TOKENS
) -> tokenizers.Tokenizer:
    """OPT's byte-level BPE from a directory, as a TF-free `tokenizers.Tokenizer` (use `add_special_tokens=False`
    or not: no post-processor is set, so nothing is added either way)."""
    vocab, merges = read_vocab_and_merges(path)
    return build_byte_level_bpe(vocab, merges, literal_special_tokens)
