"""`write_seqio_cache`: what `seqio.cache_tasks_main` writes for a task, for small tasks and without Apache Beam.

The layout is seqio's own (`<cache_dir>/<task dir>/{<split>.tfrecord-00000-of-00001, info.<split>.json,
stats.<split>.json, COMPLETED}`): the task's source and its preprocessors up to `seqio.CacheDatasetPlaceholder`,
serialized as tf.Examples. With the cache dir known to seqio (`--seqio_additional_cache_dirs`, or
`seqio.add_global_cache_dirs`), `USE_CACHED_TASKS=True` reads it exactly as it reads a Beam-written cache.
"""

from __future__ import annotations

import json
import pathlib
from typing import Sequence

import numpy as np


def write_seqio_cache(task_name: str, cache_dir: str | pathlib.Path, splits: Sequence[str] = ("train",)) -> pathlib.Path:
    """Caches `splits` of a registered task under `cache_dir`; returns the task's cache folder."""
    import seqio
    import tensorflow as tf
    from seqio import utils as seqio_utils

    task = seqio.TaskRegistry.get(task_name)
    out = pathlib.Path(cache_dir) / seqio_utils.get_task_dir_from_name(task_name)
    out.mkdir(parents=True, exist_ok=True)
    for split in splits:
        ds = task.preprocess_precache(task.source.get_dataset(split=split, shuffle=False), seed=None)
        examples = list(ds.as_numpy_iterator())
        features = {}
        for name, spec in ds.element_spec.items():
            features[name] = {"dtype": spec.dtype.name, "shape": [None if d is None else int(d) for d in spec.shape]}
        with tf.io.TFRecordWriter(str(out / f"{split}.tfrecord-00000-of-00001")) as writer:
            for ex in examples:
                writer.write(seqio_utils.dict_to_tfexample(ex).SerializeToString())
        (out / f"info.{split}.json").write_text(json.dumps({"features": features, "num_shards": 1,
                                                            "seqio_version": seqio.__version__}, indent=2))
        stats = {"examples": len(examples)}
        for name in ("inputs", "targets"):
            if name in features and features[name]["dtype"].startswith("int"):
                lengths = [len(np.asarray(ex[name]).reshape(-1)) for ex in examples]
                stats[f"{name}_tokens"], stats[f"{name}_max_tokens"] = int(sum(lengths)), int(max(lengths, default=0))
        (out / f"stats.{split}.json").write_text(json.dumps(stats, indent=2))
    (out / "COMPLETED").write_text("")
    return out
