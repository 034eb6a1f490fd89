"""Templates that fail to render, recorded instead of dropped silently.

Where a template is dropped because it does not apply to every example (the paper's protocol for PromptSource
evaluation splits; the held-out suites with `on_template_error='drop'`), the reader or suite logs one warning
with the count, names and reasons, and `record`s a `TemplateFailure` here. `drain()` hands the records of this
process to whoever writes the run's results (e.g. a results.json `template_failures` list) and clears them.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterable, Sequence

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TemplateFailure:
    source: str  # the suite or reader: "promptsource_held_out", "flan_held_out", "promptsource"
    task: str
    template: str
    template_id: str
    failed_examples: int  # rows it failed on (at least 1)
    examples: int  # rows it was tried on (0 = unknown: the reader stops at the first failure)
    first_example: str
    reason: str

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


_RECORDED: list[TemplateFailure] = []


def record(failures: Iterable[TemplateFailure]) -> None:
    _RECORDED.extend(failures)


def drain() -> list[dict]:
    """The failures recorded so far (as dicts, oldest first); clears the record."""
    out = [f.as_dict() for f in _RECORDED]
    _RECORDED.clear()
    return out


def summary(failures: Sequence[TemplateFailure]) -> str:
    parts = []
    for f in failures:
        count = f"{f.failed_examples} of {f.examples}" if f.examples else f"{f.failed_examples}"
        parts.append(f"{f.task} template {f.template!r}: fails on {count} example(s), first {f.first_example}: "
                     f"{f.reason}")
    return f"{len(failures)} template(s) dropped because they fail to render: " + "; ".join(parts)


def report(source: str, failures: Sequence[TemplateFailure]) -> None:
    """Log one warning naming every dropped template and record them (no-op when there are none)."""
    if failures:
        log.warning("%s: %s", source, summary(failures))
        record(failures)


def nan_fields(row: dict, names: Iterable[str]) -> list[str]:
    """The fields among `names` whose value is (or contains) a float NaN: a missing value in the data file that
    would otherwise be rendered as the word 'nan'."""
    def has_nan(v) -> bool:
        if isinstance(v, float):
            return math.isnan(v)
        if isinstance(v, dict):
            return any(has_nan(x) for x in v.values())
        if isinstance(v, (list, tuple)):
            return any(has_nan(x) for x in v)
        try:  # numpy scalars and arrays, pandas NA
            import numpy as np

            if isinstance(v, np.ndarray):
                return v.dtype.kind == "f" and bool(np.isnan(v).any())
            if isinstance(v, np.floating):
                return bool(np.isnan(v))
        except ImportError:
            pass
        return False

    return sorted(n for n in set(names) if n in row and has_nan(row[n]))
