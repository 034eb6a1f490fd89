"""`MODEL_DIR/run.json`: what a run trained on, written down by the run itself.

Why: a run's operative gin config says what was *asked*; this says what the data path actually *read*: the mixture,
its rates, the tokenizer, the stream's seed and every task read with its example and token counts. One entry per
launch (a resume appends one), so a run that was restarted with other settings shows it. Written by process 0 at the
start (after the first batch was built, before step 0) and again when the launch ends; each write is atomic
(temporary file + rename), so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
import sys
import time

RUN_RECORD = "run.json"


def _dir(model_dir):
    """MODEL_DIR through the path layer (a gs:// URL stays a URL): never folded through pathlib."""
    from optiml_jax.paths import user_path

    return user_path(model_dir, "MODEL_DIR")


def read_run_record(model_dir) -> dict:
    path = _dir(model_dir) / RUN_RECORD
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {"launches": []}


def _write(model_dir, record: dict) -> None:
    path = model_dir / RUN_RECORD
    tmp = model_dir / f".{RUN_RECORD}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(record, indent=1, sort_keys=False, default=str) + "\n")
    tmp.replace(path)


def start_launch(model_dir, *, data: dict, settings: dict, start_step: int, process_count: int) -> int:
    """Append this launch to run.json; returns its index (for `end_launch`)."""
    model_dir = _dir(model_dir)
    record = read_run_record(model_dir)
    launches = record.setdefault("launches", [])
    launches.append({"started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": list(sys.argv),
                     "process_count": int(process_count), "start_step": int(start_step), "final_step": None,
                     "settings": settings, "data": data})
    record["data"] = data  # the newest launch's data, at the top for a quick look
    _write(model_dir, record)
    return len(launches) - 1


def end_launch(model_dir, index: int, *, data: dict, final_step: int) -> None:
    """Record where the launch ended and every task its stream read by then."""
    model_dir = _dir(model_dir)
    record = read_run_record(model_dir)
    launches = record.get("launches", [])
    if not 0 <= index < len(launches):
        return
    launches[index].update({"ended_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "final_step": int(final_step),
                            "data": data})
    record["data"] = data
    _write(model_dir, record)


TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def keep_tokenizer(model_dir, data: dict) -> list[str]:
    """Copy the files of the tokenizer the run trains with into MODEL_DIR (beside model_config.json), so eval, infer
    and export of the run read the ids it was trained in, not a default. Returns the names copied."""
    from optiml_jax.paths import user_path

    source = data.get("tokenizer")
    if not source:
        return []
    src = user_path(source, "tokenizer")
    if not src.is_dir():
        return []
    model_dir = _dir(model_dir)
    copied = []
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            (model_dir / name).write_bytes((src / name).read_bytes())
            copied.append(name)
    return copied
