"""SeqIO preprocessors that turn raw instruction examples into the zero-shot `inputs`/`targets` texts.

`format_instruction(info, format_seed)` is the formatting step of every task we register (paper section 2.4:
instruction layout by instruction type, a per-example delimiter, the label " " + target; see
`optiml_jax.tasks.formatting`). It runs inside the task's tf.data pipeline, so `task.get_dataset(...)` (and
`seqio.cache_tasks_main`) yields exactly what training packs, and a preprocessor a user adds before it sees and
may rewrite the raw fields. The raw text fields are kept beside `inputs`/`targets`: MetaICL demonstrations and
task-level placement (definition, demonstrations, input) are laid out from them.
"""

from __future__ import annotations

from optiml_jax.tasks.formatting import draw_delimiter, layout, source_text
from optiml_jax.tasks.metadata import TaskInfo


def format_texts(info: TaskInfo, example: dict, format_seed: int = 0) -> tuple[str, str]:
    """(inputs text, targets text) of one raw example, zero-shot: what `format_instruction` writes."""
    pieces = layout(info, example, delimiter=draw_delimiter(info.name, example["id"], format_seed))
    return source_text(pieces), pieces[-1].text


BATCH = 1024  # examples per Python call: tf.data's per-element cost (~1 ms) dwarfs formatting one example


def format_instruction(info: TaskInfo, format_seed: int = 0):
    """A seqio preprocessor (dataset -> dataset) adding `inputs` and `targets` strings to raw examples.

    Runs in batches of `BATCH` (one Python call each; the same texts as example by example)."""
    import numpy as np

    def py(instruction, text, target, ex_id):
        out = [format_texts(info, {"instruction": a.decode(), "input": b.decode(), "target": c.decode(),
                                   "id": d.decode()}, format_seed) for a, b, c, d in zip(instruction, text, target, ex_id)]
        return (np.array([o[0].encode() for o in out], dtype=object),
                np.array([o[1].encode() for o in out], dtype=object))

    def fmt(dataset):
        import tensorflow as tf

        def batch_fn(ex):
            inputs, targets = tf.numpy_function(py, [ex["instruction"], ex["input"], ex["target"], ex["id"]],
                                                [tf.string, tf.string], stateful=False, name="format_instruction")
            inputs.set_shape([None])
            targets.set_shape([None])
            return {**ex, "inputs": inputs, "targets": targets}

        return dataset.batch(BATCH).map(batch_fn, num_parallel_calls=tf.data.AUTOTUNE).unbatch()

    return fmt


def tokenize_in_batches(dataset, output_features, copy_pretokenized: bool = True, with_eos: bool = False):
    """`seqio.preprocessors.tokenize`, in batches of `BATCH` (the vocabulary encodes a whole batch at once): each
    string feature of `output_features` is encoded, and kept as `<name>_pretokenized` like seqio does."""
    import tensorflow as tf

    def batch_fn(ex):
        out = dict(ex)
        for name, feature in output_features.items():
            if name in ex and ex[name].dtype == tf.string:
                if copy_pretokenized:
                    out[f"{name}_pretokenized"] = ex[name]
                ids = feature.vocabulary.encode_tf(ex[name])
                if with_eos and feature.add_eos:
                    ids = tf.concat([ids, tf.fill([ids.nrows(), 1], feature.vocabulary.eos_id)], axis=1)
                out[name] = ids
        return out

    return dataset.batch(BATCH).map(batch_fn, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
