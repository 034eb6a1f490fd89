"""OPT's special-token ids, the one definition every layer imports (models, data, evaluation, vocabularies).

Fairseq dictionary order, kept by metaseq's vocab.json: "<s>" = 0, "<pad>" = 1, "</s>" = 2, "<unk>" = 3.
"<s>" is in the vocabulary but OPT never uses it: OPT starts every sequence with "</s>" (what Hugging Face's
OPT tokenizer prepends and what its config calls `bos_token_id`), so BOS_ID == EOS_ID. Pure Python, no imports.
"""

S_ID = 0  # "<s>": present, unused by OPT
PAD_ID = 1  # "<pad>"
EOS_ID = 2  # "</s>": end of sequence *and* the first decoder input token of every sequence/segment
BOS_ID = EOS_ID
UNK_ID = 3  # "<unk>": unreachable by byte-level BPE (every byte has a token); kept for SeqIO's decode
SPECIAL_TOKENS: tuple[str, ...] = ("<s>", "<pad>", "</s>", "<unk>")  # ids 0..3, in order
