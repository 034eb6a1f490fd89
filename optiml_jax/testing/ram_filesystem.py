"""`ram://`: an offline non-local filesystem for tests of the path layer (`optiml_jax.paths`).

TensorFlow's in-process RAM filesystem, reached through `tf.io.gfile` (epath's gfile backend, the one epath uses
for `gs://` when TensorFlow is installed), so code that writes `ram://bucket/run` goes through the same epath
calls as for a bucket, and anything that turned the URL into a local path would show up as a local `ram:`
directory. epath knows only gs/s3/az/hf, so `register_ram_filesystem` adds the scheme to its tables (private
ones: `etils.epath.gpath`; checked against etils 1.15). The files live in this process's memory only: no
subprocess sees them, and Orbax cannot keep arrays there (its TensorStore layer takes local paths and gs://).
"""

from __future__ import annotations

SCHEME = "ram"


def register_ram_filesystem() -> str:
    """Make `epath.Path('ram://...')` (and so `optiml_jax.paths.user_path`) work; returns the prefix. Idempotent."""
    from etils.epath import backend, gpath, register

    prefix = f"{SCHEME}://"
    if prefix not in gpath._URI_PREFIXES:  # noqa: SLF001 (see the module docstring)
        gpath._URI_PREFIXES = gpath._URI_PREFIXES + (prefix,)  # noqa: SLF001
        gpath._URI_MAP_ROOT[prefix] = f"/{SCHEME}/"  # noqa: SLF001
        gpath._URI_SCHEMES = gpath._URI_SCHEMES | {SCHEME}  # noqa: SLF001
        gpath._PREFIX_TO_BACKEND[SCHEME] = backend.tf_backend  # noqa: SLF001
        register.register_path_cls(prefix)(gpath.PosixGPath)
    return prefix


def ram_tree(root: str) -> dict[str, bytes]:
    """Every file under `root` (a `ram://` URL) with its bytes, keyed by path relative to `root`."""
    import tensorflow as tf

    out = {}
    for top, _dirs, files in tf.io.gfile.walk(root):
        for name in files:
            path = f"{top.rstrip('/')}/{name}"
            out[path[len(root.rstrip('/')) + 1:]] = tf.io.gfile.GFile(path, "rb").read()
    return out
