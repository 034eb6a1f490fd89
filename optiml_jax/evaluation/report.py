"""report.md: the aggregates of results.json as Markdown tables shaped like the paper's (rows = generalization
level / collection / category / task, one column per shot count, "0-shot / k-shot" side by side), optionally
next to a baseline run (e.g. the model before instruction tuning) with the difference.
"""

from __future__ import annotations

from typing import Any, Sequence

from optiml_jax.tasks.metadata import LEVELS

LEVEL_TITLES = {"fully_held_out": "Fully held-out (unseen categories)",
                "partially_supervised": "Partially supervised (unseen tasks, seen categories)",
                "fully_supervised": "Fully supervised (held-out instances of trained tasks)",
                "unassigned": "Not in a generalization split"}


def _key_fn(section: str):
    return {"levels": lambda r: (r["level"],), "collections": lambda r: (r["collection"],),
            "categories": lambda r: (r["level"], r["category"]), "tasks": lambda r: (r["level"], r["task"]),
            "overall": lambda r: ("all",)}[section]


def _pivot(rows: Sequence[dict[str, Any]], section: str) -> dict[tuple, dict[int, float]]:
    key = _key_fn(section)
    table: dict[tuple, dict[int, float]] = {}
    for r in rows:
        table.setdefault(key(r), {})[r["shots"]] = r["score"]
    return table


def _order(keys, section: str):
    if section in ("levels", "categories", "tasks"):
        rank = {lvl: i for i, lvl in enumerate(LEVELS)}
        return sorted(keys, key=lambda k: (rank.get(k[0], len(LEVELS)), k))
    return sorted(keys)


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.1f}"


def _baseline_cells(agg_rows: Sequence[dict[str, Any]], section: str) -> dict[tuple, str]:
    """'chance / majority' per row key (the same for every shot count: they depend on the examples only)."""
    key, out = _key_fn(section), {}
    for r in agg_rows:
        if "chance" in r and "majority" in r:
            out.setdefault(key(r), f"{r['chance']:.1f} / {r['majority']:.1f}")
    return out


def markdown_table(results: dict[str, Any], section: str, baseline: dict[str, Any] | None = None,
                   run_name: str = "this run", baseline_name: str = "baseline") -> str:
    """One section ("levels", "collections", "categories", "tasks", "overall") as a Markdown table, with the
    chance / majority baseline of each row's tasks when the results carry them."""
    rows = _pivot(results["aggregates"][section], section)
    floors = _baseline_cells(results["aggregates"][section], section)
    base = _pivot(baseline["aggregates"][section], section) if baseline else {}
    shots = sorted({k for v in list(rows.values()) + list(base.values()) for k in v})
    label = {"levels": ["level"], "collections": ["collection"], "categories": ["level", "category"],
             "tasks": ["level", "task"], "overall": [""]}[section]
    shot_names = " / ".join(f"{k}-shot" for k in shots)
    header = list(label)
    if baseline:
        header += [f"{baseline_name} ({shot_names})", f"{run_name} ({shot_names})", "Δ"]
    else:
        header += [f"{k}-shot" for k in shots]
    if floors:
        header.append("chance / majority")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key in _order(set(rows) | set(base), section):
        cells = [LEVEL_TITLES.get(key[0], key[0]) if section == "levels" else str(k) for k in key]
        now = rows.get(key, {})
        if baseline:
            before = base.get(key, {})
            cells.append(" / ".join(_fmt(before.get(k)) for k in shots))
            cells.append(" / ".join(_fmt(now.get(k)) for k in shots))
            cells.append(" / ".join(
                f"{now[k] - before[k]:+.1f}" if k in now and k in before else "–" for k in shots))
        else:
            cells += [_fmt(now.get(k)) for k in shots]
        if floors:
            cells.append(floors.get(key, "–"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


MARGIN = 2.0  # points above a floor that count as "above" it (the mini-benchmark's levels have ~100 examples)


def reading(results: dict[str, Any], baseline: dict[str, Any] | None = None) -> str:
    """One sentence on what the level scores say, from the numbers alone: which levels are above what a model
    that learned nothing scores (the majority/chance floor) and, with a baseline, which moved."""
    floors, above, moved = {}, [], []
    base = {(r["level"], r["shots"]): r["score"] for r in (baseline or {}).get("aggregates", {}).get("levels", [])}
    for r in results["aggregates"].get("levels", []):
        if "majority" not in r:
            continue
        floor = max(r["majority"], r["chance"])
        floors.setdefault(r["level"], floor)
        name = f"{r['level'].replace('_', ' ')} ({r['shots']}-shot)"
        if r["score"] > floor + MARGIN:
            above.append(f"{name} {r['score']:.1f} vs floor {floor:.1f}")
        if (r["level"], r["shots"]) in base:
            delta = r["score"] - base[(r["level"], r["shots"])]
            if abs(delta) > MARGIN:
                moved.append(f"{name} {delta:+.1f}")
    if not floors:
        return ""
    if not above:
        text = ("No level is above its floor (what always answering the most frequent target, or a random option, "
                "scores): the model has not learned these tasks, and transfer to unseen tasks and categories is not "
                "expected at this scale (the paper's gains come from pre-trained 1.3B-175B models).")
    else:
        held_out = [a for a in above if a.startswith("fully held out")]
        text = f"Above the floor: {'; '.join(above)}."
        if not held_out:
            text += " Fully held-out categories stay at the floor: no transfer to unseen categories at this scale."
    if moved:
        text += f" Changed since the baseline: {'; '.join(moved)}."
    elif baseline:
        text += " No level moved more than 2 points since the baseline."
    return text


def render_report(results: dict[str, Any], baseline: dict[str, Any] | None = None, *, title: str = "Evaluation",
                  run_name: str = "this run", baseline_name: str = "baseline") -> str:
    """The whole report.md text."""
    parts = [f"# {title}", ""]
    if results.get("step") is not None:
        parts.append(f"Step {results['step']}" + (f" (baseline step {baseline.get('step')})"
                                                   if baseline and baseline.get("step") is not None else "") + ".")
        parts.append("")
    parts.append("Scores are percentages: accuracy for rank classification, Rouge-L F1 or exact match for "
                 "generation. Task = mean over its prompt templates (and subtasks); category = mean over its tasks; "
                 "level = mean over its categories; collection = mean over its tasks. Chance = a uniformly random "
                 "option (0 for generation); majority = always answering the most frequent target: what a model "
                 "that learned nothing scores.")
    line = reading(results, baseline)
    if line:
        parts += ["", f"Reading: {line}"]
    for section, heading in (("levels", "Generalization levels"), ("collections", "Per collection"),
                             ("categories", "Per category"), ("overall", "Average over all tasks"),
                             ("tasks", "Per task")):
        if not results["aggregates"].get(section):
            continue
        parts += ["", f"## {heading}", "",
                  markdown_table(results, section, baseline, run_name=run_name, baseline_name=baseline_name)]
    failures = results.get("template_failures") or []
    if failures:
        parts += ["", "## Templates dropped", "",
                  f"{len(failures)} template(s) failed to render and were left out of the scores above:", "",
                  "| source | task | template | failed / tried | first example | reason |", "|---|---|---|---|---|---|"]
        for f in failures:
            tried = f["examples"] or "?"
            parts.append(f"| {f['source']} | {f['task']} | {f['template']} | {f['failed_examples']} / {tried} "
                         f"| {f['first_example']} | {str(f['reason']).replace('|', '/')} |")
    return "\n".join(parts) + "\n"
