"""Every path a user writes (MODEL_DIR, checkpoints, data and tokenizer dirs, outputs) as an `etils.epath.Path`.

`pathlib` folds `gs://bucket/run` into `gs:/bucket/run`, a *local* relative path: a trainer given it writes a
directory `./gs:/bucket/run` on each host and says nothing. `user_path` keeps a URL whole (epath, as Orbax and
T5X use it: `gs://`, `s3://`, ... go to their filesystem), makes a local path absolute, and refuses a scheme
no filesystem here serves or a URL that pathlib already folded, naming the setting. `check_reachable` asks the
filesystem once, before any device work, so an unreachable bucket is one line rather than a failed save later.
This is the lowest layer (no TensorFlow import at load; epath imports its gfile backend only for URLs).
"""

from optiml_jax.paths.user_paths import (PathSettingError, check_reachable, folded_url, is_url, local_only,
                                         open_file, open_text, reachable_user_path, supported_schemes, user_path)

__all__ = ["PathSettingError", "check_reachable", "folded_url", "is_url", "local_only", "open_file", "open_text",
           "reachable_user_path", "supported_schemes", "user_path"]
