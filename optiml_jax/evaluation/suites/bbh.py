"""BIG-Bench Hard: `bbh/bbh/<task>.json` ({"canary", "examples": [{"input", "target"}]}) and the 3-shot
chain-of-thought prompts `bbh/cot-prompts/<task>.txt` (a canary line, a `-----` line, then the prompt).

Prompt: `<cot prompt>\\n\\nQ: <input>\\nA: Let's think step by step.`; the model's generation is cut at the
next "\\nQ:" and the answer is the text after "So the answer is" (exact match with the target).
The 27 subtasks form one "bbh" task. The prompt's exemplars are fixed (3 shots), whatever k the run uses.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Sequence

from optiml_jax.sources.raw_examples import SourceDataError
from optiml_jax.paths import user_path
from optiml_jax.evaluation.eval_tasks import EvalTask
from optiml_jax.evaluation.metrics import extract_cot_answer
from optiml_jax.tasks.metadata import TaskInfo

COT_SHOTS = 3


def read_cot_prompt(path: pathlib.Path) -> str:
    lines = path.read_text(encoding="utf-8").split("\n")
    try:
        cut = next(i for i, line in enumerate(lines) if line.strip() == "-----")
    except StopIteration:
        raise SourceDataError("no '-----' line after the canary", file=str(path)) from None
    return "\n".join(lines[cut + 1:]).strip()


def bbh_answer(generation: str) -> str:
    """Answer of a BBH chain-of-thought generation (stops at the model's next "Q:")."""
    return extract_cot_answer(generation.split("\nQ:", 1)[0])


def read_bbh_examples(path: pathlib.Path, task: str) -> list[dict]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        examples = data["examples"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise SourceDataError(f"not a BBH task file ({e})", file=str(path), task=task) from None
    out = []
    for i, ex in enumerate(examples):
        if not isinstance(ex, dict) or "input" not in ex or "target" not in ex:
            raise SourceDataError("example lacks input/target", file=str(path), task=task, example=str(i))
        out.append({"instruction": "", "input": str(ex["input"]), "target": str(ex["target"]),
                    "references": [str(ex["target"])], "options": [], "id": f"bbh_{task}-{i}"})
    return out


def bbh_tasks(root: str | os.PathLike, *, tasks: Sequence[str] | None = None, max_examples: int | None = None,
              level: str | None = "fully_held_out") -> list[EvalTask]:
    """One EvalTask per BBH subtask found in both `root/bbh` and `root/cot-prompts`."""
    root = user_path(root, "DATA_DIR")  # local, or a URL read through its filesystem
    data, prompts = root / "bbh", root / "cot-prompts"
    names = sorted(p.stem for p in data.glob("*.json")) if tasks is None else list(tasks)
    if not names:
        raise FileNotFoundError(f"BBH: no task files under {data}")
    out = []
    for name in names:
        if not (data / f"{name}.json").is_file() or not (prompts / f"{name}.txt").is_file():
            raise FileNotFoundError(f"BBH task {name!r}: need {data / (name + '.json')} and {prompts / (name + '.txt')}")
        cot = read_cot_prompt(prompts / f"{name}.txt")

        def fn(example: dict, demos: Sequence[dict], cot=cot) -> str:
            return f"{cot}\n\nQ: {example['input']}\nA: Let's think step by step."

        info = TaskInfo(name=f"bbh_{name}", collection="flan", category="bbh", metric="exact_match",
                        source_dataset="bbh")
        out.append(EvalTask(info=info, examples=read_bbh_examples(data / f"{name}.json", name)[:max_examples],
                            level=level, parent_task="bbh", format_fn=fn, answer_extractor=bbh_answer,
                            fixed_shots=COT_SHOTS, collection="bbh"))
    return out
