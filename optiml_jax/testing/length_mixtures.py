"""A seqio mixture whose tasks differ only in example length: the case where a packer that drops what does not fit
trains on other proportions than the mixture's rates (issue 23)."""

from __future__ import annotations

import seqio


def register_two_length_mixture(name: str, long_task: str, short_task: str, *, long_words: int = 55,
                                short_words: int = 2, examples: int = 200) -> str:
    """Registers (replacing) plain seqio tasks `long_task` (~130 tokens an example with the defaults) and
    `short_task` (~10) over the mini-benchmark vocabulary, and `name` mixing them 1:1. Returns `name`."""
    import tensorflow as tf

    from optiml_jax.tasks.mini_bench.registration import VOCABULARY

    def source(words):
        def dataset_fn(split, shuffle_files, seed=None):
            rows = [(" ".join(f"w{(i * 7 + j) % 50}" for j in range(words)), f"t{i}") for i in range(examples)]
            return tf.data.Dataset.from_tensor_slices({"inputs": [a for a, _ in rows], "targets": [b for _, b in rows]})
        return seqio.FunctionDataSource(dataset_fn, splits=["train"])

    features = {"inputs": seqio.Feature(VOCABULARY, add_eos=False), "targets": seqio.Feature(VOCABULARY, add_eos=True)}
    for task, words in ((long_task, long_words), (short_task, short_words)):
        if task in seqio.TaskRegistry.names():
            seqio.TaskRegistry.remove(task)
        seqio.TaskRegistry.add(task, source=source(words), output_features=features,
                               preprocessors=[seqio.preprocessors.tokenize, seqio.preprocessors.append_eos_after_trim])
    if name in seqio.MixtureRegistry.names():
        seqio.MixtureRegistry.remove(name)
    seqio.MixtureRegistry.add(name, [(long_task, 1.0), (short_task, 1.0)])
    return name


def remove_two_length_mixture(name: str, long_task: str, short_task: str) -> None:
    seqio.MixtureRegistry.remove(name)
    for task in (long_task, short_task):
        seqio.TaskRegistry.remove(task)
