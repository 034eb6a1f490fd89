"""Files an evaluation run writes into its output directory.

  results.json               {"step", "shots", "scores": [record per (task, template, shots)],
                              "aggregates": {"tasks", "categories", "levels", "collections", "overall"}}
                             every record/row names task, category, level, collection, shots and metric.
  predictions.jsonl          one line per evaluated example (source prompt, prediction, target, score, ...);
                             with a step, predictions_step<step>.jsonl so periodic evals do not overwrite.
  report.md                  paper-shaped tables (optionally vs a baseline results.json).
  tensorboard/               scalar summaries eval/<level|collection>/<name>/<k>shot at `step`.
  results_step<step>.json    a copy per step when `step` is given (results.json is the latest).
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
from typing import Any, Sequence

from optiml_jax.evaluation import aggregation, report
from optiml_jax.paths import user_path

log = logging.getLogger(__name__)
RESULTS_FILE = "results.json"
REPORT_FILE = "report.md"


def results_dict(records: Sequence[dict[str, Any]], *, step: int | None = None, shots: Sequence[int] = ()) -> dict:
    return {"step": step, "shots": list(shots), "scores": list(records), "aggregates": aggregation.aggregate(records)}


def load_results(path_or_dict: str | os.PathLike | dict) -> dict:
    """A results dict from a dict, a results.json path, or a directory holding results.json."""
    if isinstance(path_or_dict, dict):
        return path_or_dict
    p = user_path(path_or_dict, "BASELINE_RESULTS")
    if p.is_dir():
        p = p / RESULTS_FILE
    if not p.is_file():
        raise FileNotFoundError(f"baseline/results file {p} does not exist")
    data = json.loads(p.read_text())
    if "aggregates" not in data:
        raise ValueError(f"{p} is not an optiml_jax results.json (no 'aggregates')")
    return data


def write_tensorboard(output_dir: pathlib.Path, results: dict) -> bool:
    """Scalars per level, collection and overall; False (with a log line) when TensorBoard writing is unavailable."""
    try:
        from flax.metrics import tensorboard
    except Exception as e:  # TF-less hosts
        log.warning("TensorBoard summaries skipped: %s", e)
        return False
    step = int(results["step"] or 0)
    writer = tensorboard.SummaryWriter(str(output_dir / "tensorboard"))
    agg = results["aggregates"]
    for r in agg["levels"]:
        writer.scalar(f"eval/level/{r['level']}/{r['shots']}shot", r["score"], step)
    for r in agg["collections"]:
        writer.scalar(f"eval/collection/{r['collection']}/{r['shots']}shot", r["score"], step)
    for r in agg["overall"]:
        writer.scalar(f"eval/average/{r['shots']}shot", r["score"], step)
    writer.flush()
    writer.close()
    return True


def write_all(output_dir: str | os.PathLike, results: dict, predictions: Sequence[dict], *,
              baseline: str | os.PathLike | dict | None = None, title: str = "Evaluation") -> pathlib.Path:
    out = user_path(output_dir, "EVAL_OUTPUT_DIR")
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=2, sort_keys=True)
    (out / RESULTS_FILE).write_text(text)
    step = results.get("step")
    if step is not None:
        (out / f"results_step{step}.json").write_text(text)
    pred_name = "predictions.jsonl" if step is None else f"predictions_step{step}.jsonl"
    with (out / pred_name).open("w") as f:
        for row in predictions:
            f.write(json.dumps(row, sort_keys=True) + "\n")
    base = load_results(baseline) if baseline is not None else None
    (out / REPORT_FILE).write_text(report.render_report(results, base, title=title))
    write_tensorboard(out, results)
    return out
