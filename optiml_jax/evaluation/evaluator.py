"""Zero- and k-shot evaluation of `EvalTask`s with an `DecoderOnlyModel`: prompts, rank classification or generation,
per-example metrics, and one score record per (task, template, shots).

`run_evaluation(model, tasks, shots, output_dir, step)` is what the trainer calls every EVAL_PERIOD steps
and what `python -m optiml_jax.eval` runs; it writes results.json, predictions, TensorBoard summaries
and report.md (see `optiml_jax.evaluation.outputs`).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Sequence

import jax

from optiml_jax.evaluation import metrics
from optiml_jax.evaluation.eval_tasks import EvalTask, pick_demonstrations

log = logging.getLogger(__name__)


def build_source(model, task: EvalTask, example: dict, shots: int, *, reserve: int, seed: int = 0) -> str:
    """The prompt text of `example` with `shots` demonstrations, shortened (demonstrations dropped from the
    end, then left-truncation by the model) to leave `reserve` tokens for the answer."""
    demos = pick_demonstrations(task, example, shots, seed)
    budget = model.config.max_position_embeddings - reserve - 1  # -1: the leading </s>
    vocab = model._vocab()
    if getattr(model, "chat_template", None) is not None:
        return chat_source(model.chat_template, task, example, demos, budget + 1, seed=seed)
    from optiml_jax.tasks.formatting import fit_demonstrations, format_few_shot

    if task.format_fn is not None:
        return fit_demonstrations(lambda ds: task.format_fn(example, ds), demos,
                                  lambda source: len(vocab.encode(source)) <= budget)

    source, _ = format_few_shot(task.info, example, demos, k=len(demos), max_source_tokens=budget,
                                count_tokens=lambda s: len(vocab.encode(s)), truncate_left=lambda s, n: s, seed=seed)
    return source


def chat_source(chat, task: EvalTask, example: dict, demos: Sequence[dict], max_tokens: int, *, seed: int = 0) -> str:
    """`USE_CHAT_TEMPLATE`: the prompt as the template renders it, ending with its generation prompt: the
    demonstrations as earlier user/assistant turns (the paper's layout, `data.chat_examples.turns_from_pieces`),
    the example as the last user turn (a suite's `format_fn` prompt is one user turn). Demonstrations are dropped
    from the end while it is longer than `max_tokens`; the model cuts a 0-shot prompt that is still too long."""
    from optiml_jax.data.chat_examples import turns_from_pieces
    from optiml_jax.tasks.formatting import check_example, draw_delimiter, fit_demonstrations, layout
    from optiml_jax.vocabularies.chat_template import user

    if task.format_fn is None:
        check_example(task.info, example)
    delimiter = draw_delimiter(task.info.name, example.get("id", ""), seed)

    def build(ds) -> str:
        if task.format_fn is not None:
            return chat.prompt_text([user(task.format_fn(example, ds))])
        return chat.prompt_text(turns_from_pieces(layout(task.info, example, ds, delimiter=delimiter))[0][:-1])

    return fit_demonstrations(build, demos, lambda text: len(chat.encode_text(text)) <= max_tokens)


def _option_text(option: str, model=None) -> str:
    """Options are scored as the data path's label: " " + text (see optiml_jax.tasks.formatting); with a chat
    template, as the assistant's turn (content and end-of-turn token, as training labels it)."""
    chat = getattr(model, "chat_template", None)
    return chat.assistant_turn_text(option) if chat is not None else " " + option


def baselines(task: EvalTask, metric: str) -> dict[str, float]:
    """What a model that learned nothing scores on the task's evaluation examples, for reading a result:
    `chance` = a uniformly random option (rank classification; 0 for generation, where a random string scores
    ~0 on exact match and Rouge-L), `majority` = always answering the most frequent target of these examples."""
    from collections import Counter

    examples = task.examples
    most_common = Counter(ex["target"] for ex in examples).most_common(1)[0][0]
    if metric == "accuracy":
        chance = sum(100.0 / len(ex["options"]) for ex in examples) / len(examples)
        majority = 100.0 * sum(ex["target"] == most_common for ex in examples) / len(examples)
    else:
        metric_fn = metrics.GENERATION_METRICS[metric]
        chance = 0.0
        majority = sum(metric_fn(most_common, ex.get("references") or [ex["target"]]) for ex in examples) / len(examples)
    return {"chance": chance, "majority": majority}


def evaluate_task(model, task: EvalTask, shots: int, *, seed: int = 0, rank_normalization: str = "none",
                  max_new_tokens: int | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Evaluate one task at `shots` -> (score record, per-example prediction rows)."""
    if not task.examples:
        raise ValueError(f"task {task.key!r} has no evaluation examples")
    effective_shots = task.fixed_shots if task.fixed_shots is not None else shots
    rows: list[dict[str, Any]] = []
    started = time.time()
    if task.is_rank_classification():
        reserve = max(len(model._vocab().encode(_option_text(o, model))) for ex in task.examples for o in ex["options"])
        sources = [build_source(model, task, ex, shots, reserve=reserve, seed=seed) for ex in task.examples]
        scored = model.score_options(sources, [[_option_text(o, model) for o in ex["options"]] for ex in task.examples])
        for ex, src, opts in zip(task.examples, sources, scored):
            choice = metrics.rank_choice([o["logprob"] for o in opts], [o["num_tokens"] for o in opts],
                                         rank_normalization)
            prediction = ex["options"][choice]
            score = 100.0 if prediction == ex["target"] else 0.0
            rows.append({"id": ex["id"], "source": src, "prediction": prediction, "target": ex["target"],
                         "options": ex["options"], "option_logprobs": [o["logprob"] for o in opts], "score": score})
        metric = "accuracy"
    else:
        if task.info.metric == "accuracy":
            raise ValueError(f"task {task.key!r}: metric 'accuracy' needs 'options' on every example")
        max_new = max_new_tokens or model.max_new_tokens
        sources = [build_source(model, task, ex, shots, reserve=max_new, seed=seed) for ex in task.examples]
        generations = model.generate_texts(sources, max_new_tokens=max_new)
        metric = task.info.metric
        metric_fn = metrics.GENERATION_METRICS[metric]
        for ex, src, gen in zip(task.examples, sources, generations):
            answer = task.answer_extractor(gen) if task.answer_extractor else gen.strip()
            refs = ex.get("references") or [ex["target"]]
            rows.append({"id": ex["id"], "source": src, "generation": gen, "prediction": answer,
                         "target": ex["target"], "references": refs, "score": metric_fn(answer, refs)})
    record = {
        "task": task.key, "base_task": task.name, "template": task.template, "parent_task": task.group,
        "category": task.info.category, "level": task.level, "collection": task.collection_name,
        "shots": effective_shots, "metric": metric,
        "score": sum(r["score"] for r in rows) / len(rows), "num_examples": len(rows),
        "seconds": round(time.time() - started, 3), **baselines(task, metric),
    }
    for r in rows:
        r.update(task=task.key, shots=effective_shots, metric=metric)
    return record, rows


def evaluate_tasks(model, tasks: Sequence[EvalTask], shots: Sequence[int] = (0,), *, seed: int = 0,
                   rank_normalization: str = "none", max_new_tokens: int | None = None
                   ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """All tasks at all shot counts -> (score records, prediction rows). Tasks with a fixed number of shots
    (BBH's CoT prompt) are evaluated once."""
    from tqdm.auto import tqdm

    records, predictions = [], []
    work = [(task, k) for task in tasks for k in (shots if task.fixed_shots is None else shots[:1])]
    # a transient bar under the trainer's (tqdm stacks them); off when stderr is not a terminal
    bar = tqdm(work, desc="evaluation", unit="task", leave=False, disable=None, dynamic_ncols=True)
    for task, k in bar:
        bar.set_postfix_str(f"{task.key} {int(k)}-shot", refresh=False)
        record, rows = evaluate_task(model, task, int(k), seed=seed, rank_normalization=rank_normalization,
                                     max_new_tokens=max_new_tokens)
        log.debug("eval %s %d-shot %s=%.2f (%d examples, %.1fs)", record["task"], record["shots"],
                  record["metric"], record["score"], record["num_examples"], record["seconds"])
        records.append(record)
        predictions.extend(rows)
    return records, predictions


def run_evaluation(model, tasks: Sequence[EvalTask], shots: Sequence[int] = (0,),
                   output_dir: str | os.PathLike | None = None, step: int | None = None, *, seed: int = 0,
                   rank_normalization: str = "none", max_new_tokens: int | None = None,
                   baseline: str | os.PathLike | dict | None = None, title: str = "Evaluation",
                   template_failures: Sequence[dict] = ()) -> dict[str, Any]:
    """Evaluate, aggregate as the paper does, and (with `output_dir`) write results.json, predictions JSONL,
    TensorBoard summaries and report.md. Returns the results dict (see `outputs.results_dict`).

    `template_failures`: the templates the suites dropped while building (`optiml_jax.sources.template_failures`),
    recorded in results.json and listed in report.md so a score is never silently over fewer templates.

    `baseline`: a results.json path (or dict) of another run (e.g. the model before instruction tuning);
    the report then shows both and the difference.
    """
    from optiml_jax.evaluation import outputs

    records, predictions = evaluate_tasks(model, tasks, shots, seed=seed, rank_normalization=rank_normalization,
                                          max_new_tokens=max_new_tokens)
    results = outputs.results_dict(records, step=step, shots=list(shots))
    results["template_failures"] = list(template_failures)
    if output_dir is not None and jax.process_index() == 0:  # multi-host: every process computed the same results
        outputs.write_all(output_dir, results, predictions, baseline=baseline, title=title)
    return results
