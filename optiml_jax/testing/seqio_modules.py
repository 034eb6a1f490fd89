"""Writers of small SeqIO task modules, the way a SeqIO user writes them, for tests of the SeqIO-native data path."""

from __future__ import annotations

import textwrap


def write_seqio_task_module(directory, module: str, task: str, tsv_rows, mixture: str = "user_mixture",
                            mix_with: str = "mini_bench_flan_sentiment") -> str:
    """Writes `<directory>/<module>.py` registering `task` as seqio's README does (TextLineDataSource over a TSV of
    `tsv_rows` written beside it, a parse preprocessor, a preprocessor that visibly rewrites targets to
    "SHOUTED <target>", tokenize, append_eos_after_trim, an exact-match metric_fn) and `mixture` = 3 parts `task`
    to 1 part `mix_with`, with the mini-benchmark vocabulary. Returns the module name."""
    tsv = directory / f"{task}.tsv"
    tsv.write_text("".join(f"{a}\t{b}\n" for a, b in tsv_rows))
    (directory / f"{module}.py").write_text(textwrap.dedent(f'''
        import functools
        import seqio
        import tensorflow as tf

        import optiml_jax.tasks.registrations  # the project's tasks, to mix with
        from optiml_jax.tasks.mini_bench.registration import VOCABULARY

        @seqio.map_over_dataset
        def parse_tsv(line):
            fields = tf.strings.split(line, "\\t")
            return {{"inputs": fields[0], "targets": fields[1]}}

        @seqio.map_over_dataset
        def shout_targets(ex):  # visibly rewrites the targets: training must see "SHOUTED"
            return {{**ex, "targets": tf.strings.join(["SHOUTED ", ex["targets"]])}}

        def exact_match(targets, predictions):
            return {{"exact_match": 100.0 * sum(t == p for t, p in zip(targets, predictions)) / len(targets)}}

        seqio.TaskRegistry.add(
            "{task}",
            source=seqio.TextLineDataSource({{"train": "{tsv}", "validation": "{tsv}"}}),
            preprocessors=[parse_tsv, shout_targets, seqio.preprocessors.tokenize, seqio.CacheDatasetPlaceholder(),
                           seqio.preprocessors.append_eos_after_trim],
            output_features={{"inputs": seqio.Feature(VOCABULARY, add_eos=False),
                              "targets": seqio.Feature(VOCABULARY, add_eos=True)}},
            metric_fns=[exact_match])
        seqio.MixtureRegistry.add("{mixture}", [("{task}", 3.0), ("{mix_with}", 1.0)])
    '''))
    return module
