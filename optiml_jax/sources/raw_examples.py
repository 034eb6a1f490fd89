"""The raw-example dict every reader yields (docs/ARCHITECTURE.md, "Task metadata"), and the error readers raise.

Readers do no formatting (delimiters, demonstrations, truncation happen in `optiml_jax.data`); they only turn a
collection's or suite's public file format into `{"instruction", "input", "target", "references", "options", "id"}`.
Every failure names the file, the task and the example, so one bad row never silently drops a task.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any, Sequence

from optiml_jax.lazy_imports import renamed_attributes

RAW_EXAMPLE_KEYS = ("instruction", "input", "target", "references", "options", "id")


class SourceDataError(ValueError):
    """Bad source data (a file of a collection or suite in its public format): the message names the file, task
    and example at fault."""

    def __init__(self, message: str, *, file: str | None = None, task: str | None = None, example: str | None = None):
        where = ", ".join(f"{k}={v!r}" for k, v in (("file", file), ("task", task), ("example", example)) if v is not None)
        super().__init__(f"{message} [{where}]" if where else message)
        self.file, self.task, self.example = file, task, example


def read_json_file(path: pathlib.Path, *, missing: str | None = None, task: str | None = None) -> Any:
    """A source JSON file (local or a bucket path), or a `SourceDataError` naming it: `missing` when it does not
    exist (None: the FileNotFoundError itself), "not valid JSON" with the parser's reason when it cannot be read."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if missing is None:
            raise
        raise SourceDataError(missing, file=str(path), task=task) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SourceDataError(f"not valid JSON: {e}", file=str(path), task=task) from None


def raw_example(*, input: str, target: str, id: str, instruction: str = "",
                references: Sequence[str] | None = None, options: Sequence[str] | None = None) -> dict[str, Any]:
    """Builds a raw example; `references` defaults to `[target]` and always contains the target first."""
    refs = [target] if references is None else [str(r) for r in references]
    if not refs or refs[0] != target:
        refs = [target] + [r for r in refs if r != target]
    return {"instruction": str(instruction), "input": str(input), "target": str(target), "references": refs,
            "options": [str(o) for o in (options or [])], "id": str(id)}


def check_raw_example(ex: dict[str, Any], *, task: str = "?", file: str | None = None) -> dict[str, Any]:
    """Validates the raw-example contract (keys and types); returns `ex` unchanged."""
    missing = [k for k in RAW_EXAMPLE_KEYS if k not in ex]
    if missing:
        raise SourceDataError(f"raw example lacks keys {missing}", file=file, task=task, example=str(ex.get("id")))
    for k in ("instruction", "input", "target", "id"):
        if not isinstance(ex[k], str):
            raise SourceDataError(f"raw example field {k!r} is {type(ex[k]).__name__}, not str", file=file, task=task,
                                  example=str(ex["id"]))
    for k in ("references", "options"):
        if not isinstance(ex[k], list) or not all(isinstance(s, str) for s in ex[k]):
            raise SourceDataError(f"raw example field {k!r} must be a list of str", file=file, task=task,
                                  example=ex["id"])
    return ex


# Renamed names: one release of a clear error pointing to the new one.
RENAMED = {"BenchDataError": "SourceDataError"}
__getattr__ = renamed_attributes(__name__, RENAMED, " (a reader's input is source data, of a collection or a suite)")
