"""OPT's tokenizer: a SeqIO vocabulary over byte-level BPE, a TF-free loader, and small-tokenizer training.

`import optiml_jax.vocabularies` is cheap: `OPTVocabulary` (which needs SeqIO and TensorFlow) is imported on first
access. The TF-free pieces (`load_opt_tokenizer`, `train_opt_style_bpe`, ids, `OPTVocabularyError`) import only
`tokenizers`.

    from optiml_jax.vocabularies import OPTVocabulary, train_opt_style_bpe
    vocab = OPTVocabulary("/path/to/opt_tokenizer")        # vocab.json + merges.txt, or tokenizer.json
    vocab.encode("Hello")  # [31414]; vocab.vocab_size == 50272; pad_id 1, eos_id 2, unk_id 3

`HFTokenizerVocabulary(directory)` (lazy as well) wraps any Hugging Face `tokenizer.json` (Llama 3, Mistral, Qwen2)
with the model's chat template.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from optiml_jax.lazy_imports import lazy_attributes
from optiml_jax.vocabularies.bpe_training import MIN_VOCAB_SIZE, train_opt_style_bpe
from optiml_jax.vocabularies.tokenizer_files import (
    BOS_ID,
    DEFAULT_PAD_VOCAB_TO_MULTIPLE_OF,
    EOS_ID,
    HF_OPT_LITERAL_SPECIAL_TOKENS,
    PAD_ID,
    SPECIAL_TOKENS,
    UNK_ID,
    OPTVocabularyError,
    load_opt_tokenizer,
    padded_vocab_size,
    read_vocab_and_merges,
)

if TYPE_CHECKING:  # the deferred imports, visible to the layer contract (optiml_jax/lazy_imports.py)
    from optiml_jax.vocabularies.hf_tokenizer_vocabulary import HFTokenizerVocabulary
    from optiml_jax.vocabularies.opt_vocabulary import OPTVocabulary

_LAZY = {"OPTVocabulary": "optiml_jax.vocabularies.opt_vocabulary",
         "HFTokenizerVocabulary": "optiml_jax.vocabularies.hf_tokenizer_vocabulary"}


__getattr__ = lazy_attributes(__name__, globals(), _LAZY)


__all__ = [
    "HFTokenizerVocabulary",
    "OPTVocabulary",
    "OPTVocabularyError",
    "train_opt_style_bpe",
    "load_opt_tokenizer",
    "read_vocab_and_merges",
    "padded_vocab_size",
    "BOS_ID",
    "PAD_ID",
    "EOS_ID",
    "UNK_ID",
    "SPECIAL_TOKENS",
    "HF_OPT_LITERAL_SPECIAL_TOKENS",
    "DEFAULT_PAD_VOCAB_TO_MULTIPLE_OF",
    "MIN_VOCAB_SIZE",
]
