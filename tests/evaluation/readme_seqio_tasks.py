"""A user's task module, written the way seqio's README registers a task (TextLineDataSource over a TSV, a
parse preprocessor, tokenize, append_eos_after_trim, output features, metric_fns), for the eval CLI and the
trainer's SeqioEvalCallback to import by name (`--gin.MIXTURE_OR_TASK_MODULE=readme_seqio_tasks`).

The TSV (`validation.tsv`: input<TAB>target) lives in $OPTIML_README_TASK_DIR, which the test writes before this
module is imported. Every metric function appends what seqio handed it to $OPTIML_README_TASK_DIR/calls.jsonl, so
a test (in this or another process) can check it was called, and with what.
"""

import json
import os

import numpy as np
import seqio
import tensorflow as tf

from optiml_jax.tasks.mini_bench.registration import VOCABULARY

DATA_DIR = os.environ["OPTIML_README_TASK_DIR"]
CALLS_FILE = os.path.join(DATA_DIR, "calls.jsonl")
TASK = "optiml_readme_copy"
TARGETS_ONLY_TASK = "optiml_readme_copy_lm"
MIXTURE = "optiml_readme_mixture"  # just TASK: a mixture evaluates as its subtasks


def parse_tsv(dataset):
    """`input<TAB>target` lines -> {"inputs", "targets"} (as seqio's README / t5.data.preprocessors.parse_tsv)."""

    def _parse(line):
        inputs, targets = tf.io.decode_csv(line, record_defaults=["", ""], field_delim="\t", use_quote_delim=False)
        return {"inputs": inputs, "targets": targets}

    return dataset.map(_parse, num_parallel_calls=tf.data.AUTOTUNE)


def _record(metric, **values):
    with open(CALLS_FILE, "a") as f:
        f.write(json.dumps({"metric": metric, "pid": os.getpid(), **values}) + "\n")


def exact_match(targets, predictions):
    _record("exact_match", targets=list(targets), predictions=list(predictions))
    return {"exact_match": 100.0 * float(np.mean([t == p for t, p in zip(targets, predictions)]))}


def mean_log_likelihood(targets, scores):
    _record("mean_log_likelihood", targets=list(targets), scores=[float(s) for s in scores])
    return {"mean_log_likelihood": float(np.mean(scores))}


def mean_decode_score(targets, predictions, aux_values):
    scores = [float(s) for s in aux_values["scores"]]
    _record("mean_decode_score", targets=list(targets), predictions=list(predictions), scores=scores)
    return {"mean_decode_score": float(np.mean(scores))}


def _source():
    return seqio.TextLineDataSource(split_to_filepattern={"validation": os.path.join(DATA_DIR, "validation.tsv")})


for _name in (TASK, TARGETS_ONLY_TASK):
    if _name in seqio.TaskRegistry.names():  # re-imported by a test: register afresh
        seqio.TaskRegistry.remove(_name)
if MIXTURE in seqio.MixtureRegistry.names():
    seqio.MixtureRegistry.remove(MIXTURE)

seqio.TaskRegistry.add(
    TASK,
    source=_source(),
    preprocessors=[parse_tsv, seqio.preprocessors.tokenize, seqio.preprocessors.append_eos_after_trim],
    output_features={"inputs": seqio.Feature(vocabulary=VOCABULARY, add_eos=False),
                     "targets": seqio.Feature(vocabulary=VOCABULARY, add_eos=True)},
    metric_fns=[exact_match, mean_log_likelihood, mean_decode_score],
)

# A targets-only (language-modelling) task: evaluated with the decoder converter, prompt = "</s>".
seqio.TaskRegistry.add(
    TARGETS_ONLY_TASK,
    source=_source(),
    preprocessors=[parse_tsv, seqio.preprocessors.tokenize, seqio.preprocessors.append_eos_after_trim],
    output_features={"targets": seqio.Feature(vocabulary=VOCABULARY, add_eos=True)},
    metric_fns=[mean_log_likelihood],
)

seqio.MixtureRegistry.add(MIXTURE, [TASK], default_rate=1.0)
