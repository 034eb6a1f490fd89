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


def format_instruction(info: TaskInfo, format_seed: int = 0):
    """A seqio preprocessor (dataset -> dataset) adding `inputs` and `targets` strings to raw examples."""
    import seqio

    @seqio.map_over_dataset
    def fmt(ex):
        import tensorflow as tf

        def py(instruction, text, target, ex_id):
            raw = {"instruction": instruction.decode(), "input": text.decode(), "target": target.decode(),
                   "id": ex_id.decode()}
            src, tgt = format_texts(info, raw, format_seed)
            return src.encode(), tgt.encode()

        inputs, targets = tf.numpy_function(py, [ex["instruction"], ex["input"], ex["target"], ex["id"]],
                                            [tf.string, tf.string], stateful=False, name="format_instruction")
        inputs.set_shape([])
        targets.set_shape([])
        return {**ex, "inputs": inputs, "targets": targets}

    return fmt
