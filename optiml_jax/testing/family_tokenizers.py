"""`write_family_tokenizer(out_dir, family, texts)`: a small Hugging Face tokenizer directory shaped like a model
family's, built with the `tokenizers` library (no downloads), for tests of the paths that must use a family's own
special ids.

The shapes (ids of a real family's tokenizer are far larger; what matters is where the specials sit and which
exist):

| family   | bos                       | eos (stop ids)                          | pad                  | specials at |
|----------|---------------------------|-----------------------------------------|----------------------|-------------|
| `llama3` | `<|begin_of_text|>`       | `<|end_of_text|>` (+ `<|eot_id|>`)       | none (falls back)    | the end     |
| `qwen2`  | none                      | `<|endoftext|>`                         | `<|endoftext|>`      | the end     |
| `mistral`| `<s>` = 1                 | `</s>` = 2                              | none (falls back)    | the start (`<unk>` = 0) |

Each directory has `tokenizer.json` (byte-level BPE; the post-processor prepends the bos where the family has
one, as the real ones do) and `tokenizer_config.json` (special-token strings, a chat template), so
`transformers.AutoTokenizer.from_pretrained(out_dir)` and `HFTokenizerVocabulary(out_dir)` read it alike.
`FAMILY_STOP_TOKENS[family]` are the extra stop tokens a `generation_config.json` would list.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Iterable

FAMILIES = ("llama3", "qwen2", "mistral")

_SPECS = {
    "llama3": dict(start=[], end=["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                                  "<|eot_id|>"],
                   bos="<|begin_of_text|>", eos="<|end_of_text|>", pad=None,
                   template=("{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>"
                             "\n\n{{ m['content'] | trim }}<|eot_id|>{% endfor %}{% if add_generation_prompt %}"
                             "<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")),
    "qwen2": dict(start=[], end=["<|endoftext|>", "<|im_start|>", "<|im_end|>"], bos=None, eos="<|endoftext|>",
                  pad="<|endoftext|>",
                  template=("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                            "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")),
    "mistral": dict(start=["<unk>", "<s>", "</s>"], end=[], bos="<s>", eos="</s>", pad=None,
                    template=("{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}[INST] "
                              "{{ m['content'] }} [/INST]{% else %}{{ m['content'] }}{{ eos_token }}{% endif %}"
                              "{% endfor %}")),
}
FAMILY_STOP_TOKENS = {"llama3": ("<|eot_id|>",), "qwen2": (), "mistral": ()}
# The families' own pre-tokenizer splits (transformers 5 rebuilds a Qwen2 tokenizer with this regex whatever
# tokenizer.json says, so the test tokenizer must use it to tokenize as AutoTokenizer does); None: GPT-2's.
_SPLITS = {
    "llama3": (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+"),
    "qwen2": (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
              r"|\s*[\r\n]+|\s+(?!\S)|\s+"),
    "mistral": None,
}


def write_family_tokenizer(out_dir: str | os.PathLike, family: str, texts: Iterable[str], *,
                           bpe_size: int = 600) -> pathlib.Path:
    """Trains a byte-level BPE of about `bpe_size` ids on `texts` and writes a `family`-shaped tokenizer directory
    (see the module docstring) into `out_dir`; returns it."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    if family not in _SPECS:
        raise ValueError(f"family {family!r}: one of {FAMILIES}")
    spec = _SPECS[family]
    tok = Tokenizer(models.BPE())
    if _SPLITS[family] is None:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(_SPLITS[family]), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=bpe_size + len(spec["start"]), special_tokens=list(spec["start"]),
                                  initial_alphabet=sorted(pre_tokenizers.ByteLevel.alphabet()), show_progress=False)
    tok.train_from_iterator(list(texts), trainer)
    if spec["end"]:  # added after the BPE: the last ids of the vocabulary, as in Llama 3 and Qwen2
        tok.add_special_tokens(list(spec["end"]))
    if spec["bos"] is not None:
        bos = tok.token_to_id(spec["bos"])
        tok.post_processor = processors.TemplateProcessing(
            single=f"{spec['bos']} $A", pair=f"{spec['bos']} $A {spec['bos']} $B",
            special_tokens=[(spec["bos"], bos)])
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": spec["bos"], "eos_token": spec["eos"],
              "pad_token": spec["pad"], "chat_template": spec["template"], "model_max_length": 4096,
              "clean_up_tokenization_spaces": False}
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=1))
    return out
