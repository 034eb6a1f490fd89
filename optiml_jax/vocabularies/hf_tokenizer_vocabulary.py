"""`HFTokenizerVocabulary`: any Hugging Face `tokenizer.json` (Llama 3, Mistral, Qwen2, ...) as a `seqio.Vocabulary`,
with the model's chat template.

A directory as `transformers` saves a fast tokenizer: `tokenizer.json` (the whole `tokenizers` pipeline:
normalizer, pre-tokenizer, model, post-processor, decoder, added tokens) and, optionally,
`tokenizer_config.json` (special-token strings, `chat_template`) and `special_tokens_map.json`. The pipeline
is used as saved, so ids are the ones `transformers.AutoTokenizer.from_pretrained(directory)` produces:

  * `encode(text)` (SeqIO's contract) adds no special tokens: `tokenizer(text, add_special_tokens=False)`;
    `encode_with_special_tokens(text)` runs the post-processor (Llama 3 prepends `<|begin_of_text|>`), like
    `tokenizer(text)`.
  * `decode(ids)` cuts at the first `eos_id` (SeqIO) and skips special tokens, like
    `tokenizer.decode(ids, skip_special_tokens=True)` (no `clean_up_tokenization_spaces`: transformers 5 skips it
    for BPE models, where it would delete real spaces).
  * `apply_chat_template(messages, add_generation_prompt=...)` renders `chat_template` with jinja2 as
    `tokenizer.apply_chat_template(messages, tokenize=False)` does (same sandboxed environment, `trim_blocks`,
    `lstrip_blocks`, `loopcontrols`, `tojson`, `raise_exception`, `strftime_now`; the special tokens and keyword
    arguments as template variables). `tokenize=True` returns the ids of that text without extra special tokens.

Ids: `bos_id` / `eos_id` / `unk_id` come from the special tokens; `pad_id` from the pad token, else the eos id
(models such as Llama 3 have no pad token; Hugging Face generation pads with eos). SeqIO's own feature
converters still pad with 0, which the data pipeline must handle, as for OPT.

TF ops run the Rust tokenizer through `tf.numpy_function` (as `OPTVocabulary` does), so they work in SeqIO
pipelines of the process that built them.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any, Iterable, Sequence

from optiml_jax.vocabularies.chat_template import render_chat_template  # re-exported: its old home
from optiml_jax.vocabularies.file_vocabulary import FileVocabulary
from optiml_jax.vocabularies.tokenizer_files import OPTVocabularyError, padded_vocab_size

TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"
SPECIAL_TOKEN_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


class HFTokenizerError(OPTVocabularyError):
    """A tokenizer directory that cannot be read; the message names the directory and the file."""


def _token_text(value: Any) -> str | None:
    """A special token from tokenizer_config.json: a string, or an AddedToken dict {"content": ...}."""
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


def _read_json(path: pathlib.Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise HFTokenizerError(f"{path.parent}: cannot read {path.name} ({type(e).__name__}: {e})") from e
    if not isinstance(data, dict):
        raise HFTokenizerError(f"{path.parent}: {path.name} is not a JSON object")
    return data


class HFTokenizerVocabulary(FileVocabulary):
    """A Hugging Face fast tokenizer directory as a SeqIO vocabulary (see the module docstring).

    Args:
      path: directory with `tokenizer.json` (and optionally `tokenizer_config.json`, `special_tokens_map.json`).
      pad_vocab_to_multiple_of: `vocab_size` = number of ids rounded up to this multiple (the model's embedding
        rows may be more than the tokenizer's ids; 1 = no padding).
      pad_id: override the pad id (default: the pad token's id, else the eos id).
    """

    _TF_DECODE_NAME = "hf_tokenizer_decode"
    _TF_ENCODE_NAME = "hf_tokenizer_encode"

    def __init__(self, path: str | os.PathLike, *, pad_vocab_to_multiple_of: int = 1, pad_id: int | None = None):
        self._pad_override = pad_id
        super().__init__(path, pad_vocab_to_multiple_of)

    def _load(self) -> None:
        import tokenizers

        tokenizer_file = self._path / TOKENIZER_FILE
        if not tokenizer_file.is_file():
            raise HFTokenizerError(f"{self._path}: {TOKENIZER_FILE} is missing")
        try:
            self._tokenizer = tokenizers.Tokenizer.from_str(tokenizer_file.read_text())  # local or a bucket
        except Exception as e:  # tokenizers raises bare Exceptions for malformed files
            raise HFTokenizerError(f"{self._path}: cannot load {TOKENIZER_FILE} ({e})") from e
        config = {}
        if (self._path / SPECIAL_TOKENS_MAP_FILE).is_file():
            config.update(_read_json(self._path / SPECIAL_TOKENS_MAP_FILE))
        if (self._path / TOKENIZER_CONFIG_FILE).is_file():
            config.update({k: v for k, v in _read_json(self._path / TOKENIZER_CONFIG_FILE).items() if v is not None})
        self._special_tokens = {}
        for name in SPECIAL_TOKEN_NAMES:
            text = _token_text(config.get(name))
            if text is None:
                continue
            if self._tokenizer.token_to_id(text) is None:
                raise HFTokenizerError(f"{self._path}: {name} {text!r} is not a token of {TOKENIZER_FILE}")
            self._special_tokens[name] = text
        template = config.get("chat_template")
        if isinstance(template, list):  # several named templates: transformers' default is "default"
            template = {t.get("name"): t.get("template") for t in template}.get("default")
        if template is None and (self._path / "chat_template.jinja").is_file():
            template = (self._path / "chat_template.jinja").read_text(encoding="utf-8")
        self._chat_template = template
        self._num_ids = self._tokenizer.get_vocab_size(with_added_tokens=True)
        self._padded_size = padded_vocab_size(self._num_ids, self._pad_vocab_to_multiple_of)

    # ----------------------------------------------------------------------------------------------- ids / sizes
    @property
    def special_tokens(self) -> dict[str, str]:
        """{'bos_token': '<|begin_of_text|>', ...}: the template variables transformers passes as well."""
        return dict(self._special_tokens)

    @property
    def chat_template(self) -> str | None:
        return self._chat_template

    def _special_id(self, name: str) -> int | None:
        text = self._special_tokens.get(name)
        return None if text is None else self._tokenizer.token_to_id(text)

    @property
    def bos_id(self) -> int | None:
        return self._special_id("bos_token")

    @property
    def eos_id(self) -> int | None:
        return self._special_id("eos_token")

    @property
    def unk_id(self) -> int | None:
        return self._special_id("unk_token")

    @property
    def pad_id(self) -> int:
        if self._pad_override is not None:
            return self._pad_override
        pad = self._special_id("pad_token")
        if pad is not None:
            return pad
        return self.eos_id if self.eos_id is not None else 0

    # ----------------------------------------------------------------------------------------------- python ops
    def encode_with_special_tokens(self, s: str) -> list[int]:
        """Ids with the post-processor's special tokens (e.g. BOS), as `AutoTokenizer(...)(s)["input_ids"]`."""
        return self._tokenizer.encode(s, add_special_tokens=True).ids

    def _decode(self, ids: Iterable[int]) -> str:
        ids = [int(i) for i in ids]
        ids = [i for i in ids if 0 <= i < self._num_ids]  # embedding-padding ids have no token
        return self._tokenizer.decode(ids, skip_special_tokens=True)

    def apply_chat_template(self, messages: Sequence[dict], *, add_generation_prompt: bool = False,
                            tokenize: bool = False, chat_template: str | None = None, **kwargs: Any):
        """The chat rendered as text (or its ids with `tokenize=True`), as transformers' `apply_chat_template`."""
        template = chat_template or self._chat_template
        if template is None:
            raise ValueError(f"{self}: no chat_template in {TOKENIZER_CONFIG_FILE} (pass chat_template=...)")
        text = render_chat_template(template, messages, add_generation_prompt=add_generation_prompt,
                                    **{**self._special_tokens, **kwargs})
        return self._encode(text) if tokenize else text

    # ----------------------------------------------------------------------------------------------- identity
    def _options(self) -> dict:
        return {"pad_id": self._pad_override}

    def _set_options(self, settings: dict) -> None:
        self._pad_override = settings["pad_id"]

    def __repr__(self) -> str:
        return f"HFTokenizerVocabulary({str(self._path)!r})"

    __str__ = __repr__


__all__ = ["HFTokenizerVocabulary", "HFTokenizerError", "render_chat_template"]
