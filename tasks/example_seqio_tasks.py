"""An example task module, written exactly as SeqIO's README writes one: copy it, point it at your data.

    python -m optiml_jax.train --gin_file=gin/runs/quickstart.gin \
        --gin.MIXTURE_OR_TASK_MODULE=tasks.example_seqio_tasks --gin.MIXTURE_OR_TASK_NAME=example_mixture
    python -m optiml_jax.tasks report example_mixture --module_import=tasks.example_seqio_tasks

Nothing here is optiml_jax API except two optional extras: the mini-benchmark's vocabulary (so the task mixes
with the project's tasks and trains the quickstart's tiny model) and `register_task_metadata`, which tells the
OPT-IML side what the task is (collection, category, instruction layout). Without it the task trains with
defaults: its own category, instance-level layout, loss on `targets` only.
"""

import os

import seqio
import tensorflow as tf

import optiml_jax.tasks.registrations  # noqa: F401  (the mini-benchmark, to mix with)
from optiml_jax.tasks.mini_bench.registration import VOCABULARY
from optiml_jax.tasks.registry import register_task_metadata

TSV = os.path.join(os.path.dirname(os.path.abspath(__file__)), "example_data", "alphabet_order.tsv")


@seqio.map_over_dataset
def parse_tsv(line):
    question, answer = tf.strings.split(line, "\t")[0], tf.strings.split(line, "\t")[1]
    return {"inputs": tf.strings.join([question, "\nAnswer:"]), "targets": tf.strings.join([" ", answer])}


def exact_match(targets, predictions):
    return {"exact_match": 100.0 * sum(t.strip() == p.strip() for t, p in zip(targets, predictions)) / len(targets)}


seqio.TaskRegistry.add(
    "example_alphabet_order",
    source=seqio.TextLineDataSource({"train": TSV, "validation": TSV}),
    preprocessors=[parse_tsv, seqio.preprocessors.tokenize, seqio.CacheDatasetPlaceholder(),
                   seqio.preprocessors.append_eos_after_trim],
    output_features={"inputs": seqio.Feature(VOCABULARY, add_eos=False),
                     "targets": seqio.Feature(VOCABULARY, add_eos=True)},
    metric_fns=[exact_match],
)
register_task_metadata("example_alphabet_order", collection="flan", category="word_ordering")

# One part of the new task to four parts of the mini-benchmark's training mixture (itself a mixture: nested).
seqio.MixtureRegistry.add("example_mixture", [("example_alphabet_order", 1.0), ("mini_bench_train", 4.0)])
