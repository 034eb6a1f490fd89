"""Super-NaturalInstructions task files (allenai/natural-instructions `tasks/*.json`, one task per file).

Task-level instructions: `instruction` is the task definition; the positive examples are the task's fixed
demonstrations (`NIv2Task.demonstrations`, placed between definition and input by the formatter); each instance
may carry several reference outputs (`references`; `target` is the first). The task is named
`niv2_<file stem>`. Python's json parser accepts the bare `NaN` found in task1149's "URL" field.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Iterator

from optiml_jax.paths import user_path
from optiml_jax.sources.raw_examples import SourceDataError, raw_example, read_json_file


@dataclasses.dataclass(frozen=True)
class NIv2Task:
    name: str
    path: pathlib.Path
    definition: str
    categories: tuple[str, ...]
    source: tuple[str, ...]
    demonstrations: tuple[dict, ...]  # [{"input", "target", "explanation"}] from "Positive Examples"
    instances: tuple[dict, ...]

    def examples(self) -> Iterator[dict]:
        """Raw examples, one per instance, in file order."""
        for i, inst in enumerate(self.instances):
            ex_id = str(inst.get("id", f"{self.name}-{i}"))
            if "input" not in inst or "output" not in inst:
                raise SourceDataError("instance lacks 'input' or 'output'", file=str(self.path), task=self.name,
                                      example=ex_id)
            outputs = inst["output"]
            if isinstance(outputs, str):
                outputs = [outputs]
            outputs = [str(o) for o in outputs if isinstance(o, str)]
            if not outputs:
                raise SourceDataError("instance has no string output", file=str(self.path), task=self.name,
                                      example=ex_id)
            yield raw_example(instruction=self.definition, input=str(inst["input"]), target=outputs[0],
                              references=outputs, id=ex_id)


def task_name(path: str | pathlib.Path) -> str:
    return "niv2_" + pathlib.Path(path).stem


def _first_string(value, field: str, path: pathlib.Path, name: str) -> str:
    if isinstance(value, list):
        value = value[0] if value else None
    if not isinstance(value, str):
        raise SourceDataError(f"field {field!r} must be a string or a one-string list", file=str(path), task=name)
    return value


def load_task(path: str | pathlib.Path) -> NIv2Task:
    """Parses one task file; errors name the file and task."""
    path = user_path(path, "NIV2_DATA_DIR")
    name = task_name(path)
    data = read_json_file(path, missing="task file does not exist", task=name)
    if not isinstance(data, dict):
        raise SourceDataError("task file must hold a JSON object", file=str(path), task=name)
    for field in ("Definition", "Instances"):
        if field not in data:
            raise SourceDataError(f"missing field {field!r}", file=str(path), task=name)
    instances = data["Instances"]
    if not isinstance(instances, list) or not instances:
        raise SourceDataError("task has no instances", file=str(path), task=name)
    demos = []
    for j, ex in enumerate(data.get("Positive Examples") or []):
        if not isinstance(ex, dict) or "input" not in ex or "output" not in ex:
            raise SourceDataError("positive example lacks input/output", file=str(path), task=name,
                                  example=f"positive-{j}")
        out = ex["output"][0] if isinstance(ex["output"], list) else ex["output"]
        demos.append({"input": str(ex["input"]), "target": str(out), "explanation": str(ex.get("explanation", ""))})
    return NIv2Task(
        name=name, path=path, definition=_first_string(data["Definition"], "Definition", path, name),
        categories=tuple(data.get("Categories") or ()), source=tuple(data.get("Source") or ()),
        demonstrations=tuple(demos), instances=tuple(instances))


def task_files(data_dir: str | pathlib.Path) -> list[pathlib.Path]:
    """The `task*.json` files of an NIv2 `tasks/` directory (or of its parent checkout)."""
    data_dir = user_path(data_dir, "NIV2_DATA_DIR")  # local or a bucket (optiml_jax.paths)
    if not data_dir.is_dir():
        raise SourceDataError("NIv2 data directory does not exist (set NIV2_DATA_DIR)", file=str(data_dir))
    if (data_dir / "tasks").is_dir():
        data_dir = data_dir / "tasks"
    files = sorted(data_dir.glob("task*.json"))
    if not files:
        raise SourceDataError("no task*.json files in the NIv2 data directory", file=str(data_dir))
    return files


def read_niv2_tasks(data_dir: str | pathlib.Path, names: set[str] | None = None) -> Iterator[NIv2Task]:
    """Loads every task file in `data_dir` (restricted to catalog `names` like 'niv2_task062_...' if given)."""
    for path in task_files(data_dir):
        if names is None or task_name(path) in names:
            yield load_task(path)
