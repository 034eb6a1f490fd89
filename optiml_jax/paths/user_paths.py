"""`user_path`, `check_reachable`, `local_only`: the package docstring says why."""

from __future__ import annotations

import os
import re

from etils import epath
from etils.epath import register as _epath_register

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_BUCKET_SCHEMES = ("gs", "s3", "az")  # a path there lives in a bucket that must exist beforehand
_FOLDED = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):/(?!/)")  # what str(pathlib.Path("gs://b/x")) gives: "gs:/b/x"


class PathSettingError(ValueError):
    """A path setting the user can fix (unknown scheme, folded URL, unreachable filesystem); names the setting.

    A ValueError, so every command reports it as one line with exit 2 (optiml_jax/cli/errors.py)."""


def is_url(value: str | os.PathLike) -> bool:
    """True for `scheme://...` (a string or an epath.Path holding a URL)."""
    return _URL.match(os.fspath(value)) is not None


def supported_schemes() -> list[str]:
    """The URL schemes epath can open here: its own (gs, s3, az, hf) and any registered with
    `epath.register_path_cls` (e.g. the test filesystem of `optiml_jax.testing.ram_filesystem`)."""
    return sorted(p.removesuffix("://") for p in _epath_register._URI_PREFIXES_TO_CLS)  # noqa: SLF001


def folded_url(value: str | os.PathLike) -> str | None:
    """The URL a pathlib-folded path `gs:/bucket/x` stood for (`gs://bucket/x`), or None."""
    text = os.fspath(value)
    m = _FOLDED.match(text)
    if m is None or m.group(1) not in supported_schemes():
        return None
    return f"{m.group(1)}://{text[m.end():]}"


def user_path(value: str | os.PathLike, setting: str) -> epath.Path:
    """`value` as an epath.Path: a URL intact on its filesystem, a local path absolute (`~` expanded).

    `setting` (e.g. "MODEL_DIR") names the gin macro or flag in the error for an empty value, a scheme no
    filesystem here serves (`nosuch://x`), or a URL pathlib already folded (`gs:/bucket/x`)."""
    if isinstance(value, epath.Path) and is_url(value):
        return value
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        raise PathSettingError(f"{setting} = {value!r}: expected a directory or file path (local or a URL like "
                               "gs://bucket/dir)")
    text = os.fspath(value)
    m = _URL.match(text)
    if m is not None:
        scheme = m.group(1)
        if scheme == "file":
            return epath.Path(os.path.abspath(os.path.expanduser(text[len("file://"):])))
        if scheme not in supported_schemes():
            raise PathSettingError(f"{setting} = {text!r}: no filesystem for {scheme}:// is available here "
                                   f"(supported: {', '.join(s + '://' for s in supported_schemes())}, local paths)")
        path = epath.Path(text)
        if not os.fspath(path).startswith(f"{scheme}://"):
            raise PathSettingError(f"{setting} = {text!r}: the path layer changed it to {os.fspath(path)!r}")
        return path
    folded = folded_url(text)
    if folded is not None:
        raise PathSettingError(f"{setting} = {text!r} is a URL with one slash folded away (pathlib does this); "
                               f"write {folded!r}")
    return epath.Path(os.path.abspath(os.path.expanduser(text)))


def check_reachable(path: epath.Path, setting: str) -> epath.Path:
    """Ask `path`'s filesystem whether `path` exists (for a URL: one metadata request), so a bucket that cannot be
    reached (no network, no credentials, no such bucket) is a `PathSettingError` naming `setting` before any
    device work. Local paths pass: the existing checks (writability, free space) report them precisely."""
    if not is_url(path):
        return path
    scheme, rest = os.fspath(path).split("://", 1)
    try:
        if not path.exists() and scheme in _BUCKET_SCHEMES and rest.split("/")[0]:
            bucket = epath.Path(f"{scheme}://{rest.split('/')[0]}")
            if not bucket.exists():
                raise PathSettingError(f"{setting} = {os.fspath(path)!r}: bucket {os.fspath(bucket)} does not exist")
    except PathSettingError:
        raise
    except Exception as e:  # noqa: BLE001 (gfile/fsspec raise their own types; all mean "cannot reach")
        first = next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)
        raise PathSettingError(f"{setting} = {os.fspath(path)!r}: cannot reach its filesystem: "
                               f"{type(e).__name__}: {first}") from e
    return path


def reachable_user_path(value: str | os.PathLike | None, setting: str) -> epath.Path | None:
    """`check_reachable(user_path(value))`, None for None: an optional setting checked before any device work."""
    return None if value is None else check_reachable(user_path(value, setting), setting)


def local_only(value: str | os.PathLike, setting: str, why: str) -> epath.Path:
    """`user_path(value)` that must be local (a reader that needs an OS file); `why` names what needs it."""
    path = user_path(value, setting)
    if is_url(path):
        raise PathSettingError(f"{setting} = {os.fspath(path)!r}: {why} reads local files only; copy it to a "
                               "local directory first")
    return path


def open_file(path: epath.Path, mode: str):
    """A file object for `path` that stays open across calls (a log appended to over a run): epath's gfile backend
    hands out a context manager rather than the file, which `with` would close at once."""
    handle = path.open(mode)
    if not hasattr(handle, "write") and hasattr(handle, "__enter__"):
        handle = handle.__enter__()
    return handle


def open_text(path: epath.Path):
    """`path` opened for reading text, as a context manager: a local file with `newline=""` (what the csv module
    wants), a URL through its filesystem (epath accepts no `newline`; gfile returns lines as written)."""
    if is_url(path):
        return path.open("r")
    return open(path, encoding="utf-8", newline="")
