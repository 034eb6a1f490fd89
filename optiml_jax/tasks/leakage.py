"""Train/eval leakage by 13-gram overlap (paper section 2.3).

For every (train task, eval task) pair: the fraction of the eval task's examples that share at least one 13-gram
with any example of the train task; pairs above 1% are flagged for review. A task's template is not overlap: as
decontamination tools do, an n-gram that occurs in more than `template_share` (default 20%, and in at least 3)
of one task's own examples is that task's boilerplate (its prompt template, a fixed answer phrase) and is left out
of that task's side of the comparison. Likewise a target that is the target of at least 3 of the task's examples
(a class label: "tool", "yes") is not instance text: those examples are compared by their input, since a template
n-gram that runs into a label ("... ||| vehicle tool") is shared by every example with that label and is neither
template-frequent nor a copy. An instance copied from one task into another still shares its own text. Text is whitespace-tokenized and
lowercased; every 13-gram is hashed to a 64-bit integer (polynomial rolling hash over stable per-token hashes);
the train side becomes one sorted (hash, train task) index, and each eval task is answered with vectorized
`searchsorted` look-ups -- no pairwise string search, so thousands of tasks stay fast. Each flagged pair names
its evidence: the overlapping eval examples (id and text), for each the train example it shares the most n-grams
with (found through a per-example index built only for the flagged train tasks), and the first shared n-grams.

CLI (the data helper's `python -m optiml_jax.tasks leakage` calls `main`):
    python -m optiml_jax.tasks.leakage --train DIR_OR_FILES... --eval DIR_OR_FILES... --out report
Inputs: NIv2 task .json files, CoT *_train.tsv files, metaseq {"src","tgt"} .jsonl files, or directories of them.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import pathlib
import time
from typing import Iterable, Mapping

import numpy as np

NGRAM = 13
THRESHOLD = 0.01
TEMPLATE_SHARE = 0.2  # an n-gram in more than this share of one task's examples is template text
TEMPLATE_MIN_EXAMPLES = 3
EVIDENCE_PER_PAIR = 25  # flagged eval examples named per pair in the report (None: all)
EVIDENCE_NGRAMS = 3  # shared n-grams quoted per flagged example
EVIDENCE_CHARS = 300  # example text is quoted up to this many characters
_MULT = np.uint64(0x9E3779B97F4A7C15)
_token_cache: dict[str, int] = {}


def _token_hash(tok: str) -> int:
    h = _token_cache.get(tok)
    if h is None:
        h = int.from_bytes(hashlib.blake2b(tok.encode("utf-8"), digest_size=8).digest(), "little")
        if len(_token_cache) < 2_000_000:
            _token_cache[tok] = h
    return h


def _window_hashes(toks: list[str], n: int) -> np.ndarray:
    """uint64 hash of the n-gram starting at each token position, in text order."""
    if len(toks) < n:
        return np.zeros((0,), np.uint64)
    th = np.fromiter((_token_hash(t) for t in toks), dtype=np.uint64, count=len(toks))
    m = len(toks) - n + 1
    h = np.zeros((m,), np.uint64)
    with np.errstate(over="ignore"):
        for k in range(n):
            h = h * _MULT + th[k:k + m]
    return h


def ngram_hashes(text: str, n: int = NGRAM) -> np.ndarray:
    """Unique uint64 hashes of the n-grams of lowercased whitespace tokens (empty if fewer than n tokens)."""
    return np.unique(_window_hashes(text.lower().split(), n))


def shared_ngrams(text: str, hashes: np.ndarray, n: int = NGRAM, limit: int = 3) -> list[str]:
    """The first `limit` n-grams of `text` (lowercased tokens, in text order) whose hash is in `hashes`."""
    toks, wanted = text.lower().split(), set(np.asarray(hashes, np.uint64).tolist())
    out = []
    for i, h in enumerate(_window_hashes(toks, n).tolist()):
        if len(out) == limit:
            break
        if h in wanted:
            wanted.discard(h)
            out.append(" ".join(toks[i:i + n]))
    return out


def example_text(ex: Mapping) -> str:
    """The instance text compared across tasks: input and target (task definitions are not instance data)."""
    return f"{ex.get('input', '')} {ex.get('target', '')}"


def compared_texts(examples: list[Mapping], template_share: float | None = TEMPLATE_SHARE) -> list[str]:
    """The text of each example that is compared: input and target, or the input alone where the target is a
    class label (the target of at least `TEMPLATE_MIN_EXAMPLES` of the task's examples)."""
    def label(ex: Mapping) -> str:
        return str(ex.get("target", "")).strip().lower()

    labels = collections.Counter(label(ex) for ex in examples) if template_share is not None else {}
    return [str(ex.get("input", "")) if labels.get(label(ex), 0) >= TEMPLATE_MIN_EXAMPLES else example_text(ex)
            for ex in examples]


def task_hashes(examples: Iterable[Mapping], n: int = NGRAM, template_share: float | None = TEMPLATE_SHARE
                ) -> tuple[list[np.ndarray], int]:
    """Per-example n-gram hashes of one task, without the task's template n-grams; and how many were dropped."""
    examples = list(examples)
    per = [ngram_hashes(text, n) for text in compared_texts(examples, template_share)]
    if template_share is None or len(per) < TEMPLATE_MIN_EXAMPLES or not any(len(h) for h in per):
        return per, 0
    values, counts = np.unique(np.concatenate(per), return_counts=True)
    common = values[(counts > template_share * len(per)) & (counts >= TEMPLATE_MIN_EXAMPLES)]
    if not common.size:
        return per, 0
    return [h[~np.isin(h, common)] for h in per], int(common.size)


class TrainIndex:
    """Sorted (13-gram hash -> train task id) pairs for many train tasks."""

    def __init__(self, train_tasks: Mapping[str, Iterable[Mapping]], n: int = NGRAM,
                 template_share: float | None = TEMPLATE_SHARE):
        self.names = list(train_tasks)
        self.template_ngrams = 0
        hashes, ids = [], []
        for i, name in enumerate(self.names):
            per, dropped = task_hashes(train_tasks[name], n, template_share)
            self.template_ngrams += dropped
            if per:
                u = np.unique(np.concatenate(per))
                hashes.append(u)
                ids.append(np.full(u.shape, i, np.int32))
        h = np.concatenate(hashes) if hashes else np.zeros((0,), np.uint64)
        t = np.concatenate(ids) if ids else np.zeros((0,), np.int32)
        order = np.argsort(h, kind="stable")
        self.hashes, self.task_ids, self.n = h[order], t[order], n

    def overlapping_tasks(self, example_hashes: list[np.ndarray]) -> np.ndarray:
        """bool [n_examples, n_train_tasks]: example shares a hash with the train task."""
        out = np.zeros((len(example_hashes), len(self.names)), bool)
        if not example_hashes or self.hashes.size == 0:
            return out
        lens = np.array([len(h) for h in example_hashes])
        if lens.sum() == 0:
            return out
        allh = np.concatenate(example_hashes)
        ex_of = np.repeat(np.arange(len(example_hashes)), lens)
        lo = np.searchsorted(self.hashes, allh, side="left")
        hi = np.searchsorted(self.hashes, allh, side="right")
        counts = hi - lo
        hit = counts > 0
        if not hit.any():
            return out
        lo, counts, ex_of = lo[hit], counts[hit], ex_of[hit]
        idx = np.repeat(lo - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
        out[np.repeat(ex_of, counts), self.task_ids[idx]] = True
        return out


class _ExampleIndex:
    """One train task's (13-gram hash -> example) pairs: which of its examples an eval example is closest to."""

    def __init__(self, task: str, examples: list[Mapping], n: int, template_share: float | None):
        self.task, self.examples, self.n = task, examples, n
        self.texts = compared_texts(examples, template_share)
        self.per, _ = task_hashes(examples, n, template_share)
        lens = [len(h) for h in self.per]
        h = np.concatenate(self.per) if self.per else np.zeros((0,), np.uint64)
        ex = np.repeat(np.arange(len(self.per)), lens)
        order = np.argsort(h, kind="stable")
        self.hashes, self.example_of = h[order], ex[order]

    def closest(self, hashes: np.ndarray) -> tuple[int, np.ndarray]:
        """(index of the train example sharing the most of `hashes`, the hashes they share)."""
        lo = np.searchsorted(self.hashes, hashes, side="left")
        hi = np.searchsorted(self.hashes, hashes, side="right")
        hits = np.concatenate([self.example_of[a:b] for a, b in zip(lo, hi) if b > a])
        j = int(np.argmax(np.bincount(hits)))  # ties: the first such train example
        return j, np.intersect1d(hashes, self.per[j])


def _example_id(task: str, examples: list[Mapping], i: int) -> str:
    return str(examples[i].get("id") or f"{task}[{i}]")


def _excerpt(text: str, chars: int = EVIDENCE_CHARS) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= chars else text[:chars - 3] + "..."


def find_leaks(train_tasks: Mapping[str, Iterable[Mapping]], eval_tasks: Mapping[str, Iterable[Mapping]], *,
               n: int = NGRAM, threshold: float = THRESHOLD, template_share: float | None = TEMPLATE_SHARE,
               evidence_per_pair: int | None = EVIDENCE_PER_PAIR) -> dict:
    """{"pairs": [{"train", "eval", "overlap_fraction", "overlapping_examples", "eval_examples", "evidence"}], ...};
    pairs above `threshold` only, sorted by fraction. Identical task names on both sides are compared too.
    `template_share=None` counts template n-grams as overlap (the plain paper check). A pair's `evidence` names,
    for its first `evidence_per_pair` overlapping eval examples (None: all), the example (id, text), the train
    example of the pair's train task it shares the most n-grams with, and the first `EVIDENCE_NGRAMS` shared
    n-grams, so a reader can see why it is flagged."""
    t0 = time.perf_counter()
    train_tasks = {name: list(examples) for name, examples in train_tasks.items()}
    index = TrainIndex(train_tasks, n, template_share)
    by_example: dict[str, _ExampleIndex] = {}  # built only for the train tasks of flagged pairs
    pairs, n_eval_examples, eval_template = [], 0, 0
    for ename, examples in eval_tasks.items():
        examples = list(examples)
        hashes, dropped = task_hashes(examples, n, template_share)
        eval_template += dropped
        n_eval_examples += len(hashes)
        if not hashes:
            continue
        hit = index.overlapping_tasks(hashes)
        frac = hit.mean(axis=0)
        texts = None
        for ti in np.nonzero(frac > threshold)[0]:
            tname = index.names[ti]
            if tname not in by_example:
                by_example[tname] = _ExampleIndex(tname, train_tasks[tname], n, template_share)
            train = by_example[tname]
            texts = texts or compared_texts(examples, template_share)
            evidence = []
            for i in np.nonzero(hit[:, ti])[0][:evidence_per_pair].tolist():
                j, shared = train.closest(hashes[i])
                evidence.append({
                    "eval_id": _example_id(ename, examples, i), "eval_text": _excerpt(texts[i]),
                    "train_id": _example_id(tname, train.examples, j), "train_text": _excerpt(train.texts[j]),
                    "shared_ngram_count": int(shared.size),
                    "shared_ngrams": shared_ngrams(texts[i], shared, n, EVIDENCE_NGRAMS)})
            pairs.append({"train": tname, "eval": ename, "overlap_fraction": float(frac[ti]),
                          "overlapping_examples": int(hit[:, ti].sum()), "eval_examples": len(hashes),
                          "evidence": evidence})
    pairs.sort(key=lambda p: (-p["overlap_fraction"], p["train"], p["eval"]))
    return {"ngram": n, "threshold": threshold, "train_tasks": len(index.names), "eval_tasks": len(eval_tasks),
            "eval_examples": n_eval_examples, "train_ngrams": int(index.hashes.size), "template_share": template_share,
            "template_ngrams_ignored": {"train": index.template_ngrams, "eval": eval_template},
            "evidence_per_pair": evidence_per_pair, "seconds": round(time.perf_counter() - t0, 3), "pairs": pairs}


def format_markdown(report: dict) -> str:
    lines = [f"# Train/eval {report['ngram']}-gram leakage", "",
             f"{report['train_tasks']} train tasks ({report['train_ngrams']} distinct n-grams) x "
             f"{report['eval_tasks']} eval tasks ({report['eval_examples']} examples); pairs with more than "
             f"{report['threshold']:.0%} of eval examples sharing an n-gram: {len(report['pairs'])} "
             f"({report['seconds']} s). Template n-grams (in more than {report.get('template_share')} of one task's "
             f"examples) left out: {report.get('template_ngrams_ignored')}.", "", "| train task | eval task | overlap | examples |", "|---|---|---|---|"]
    lines += [f"| {p['train']} | {p['eval']} | {p['overlap_fraction']:.1%} | {p['overlapping_examples']}/"
              f"{p['eval_examples']} |" for p in report["pairs"]]
    if report["pairs"]:
        lines += ["", "## Evidence", "",
                  "Each flagged eval example (up to "
                  f"{report.get('evidence_per_pair') or 'all'} per pair), the train example it shares the most "
                  f"{report['ngram']}-grams with, and the first shared ones."]
    for p in report["pairs"]:
        shown = len(p.get("evidence", ()))
        lines += ["", f"### {p['train']} -> {p['eval']} ({shown} of {p['overlapping_examples']} shown)", ""]
        for e in p.get("evidence", ()):
            lines += [f"- eval `{e['eval_id']}`: {e['eval_text']}",
                      f"  - closest train `{e['train_id']}` ({e['shared_ngram_count']} shared): {e['train_text']}"]
            lines += [f"  - shared: \"{g}\"" for g in e["shared_ngrams"]]
    return "\n".join(lines) + "\n"


def write_report(report: dict, out_prefix: str | pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    out = pathlib.Path(out_prefix)
    out.parent.mkdir(parents=True, exist_ok=True)
    jp, mp = out.with_suffix(".json"), out.with_suffix(".md")
    jp.write_text(json.dumps(report, indent=1))
    mp.write_text(format_markdown(report))
    return jp, mp


def load_task_paths(paths: Iterable[str], max_examples: int | None = None) -> dict[str, list[dict]]:
    """{task: raw examples} from NIv2 .json, CoT .tsv, src/tgt .jsonl files or directories of them."""
    from optiml_jax.sources.cot_reader import read_cot_tsv
    from optiml_jax.sources.jsonl_reader import read_src_tgt_jsonl
    from optiml_jax.sources.niv2_reader import load_task

    files: list[pathlib.Path] = []
    for p in map(pathlib.Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix in (".json", ".tsv", ".jsonl"))
        elif p.exists():
            files.append(p)
        else:
            raise FileNotFoundError(f"leakage input {p} does not exist")
    tasks = {}
    for f in files:
        if f.suffix == ".json":
            t = load_task(f)
            name, it = t.name, t.examples()
        elif f.suffix == ".tsv":
            name = "cot_" + f.name.split("_train")[0]
            it = read_cot_tsv(f, name)
        else:
            name = f.stem
            it = read_src_tgt_jsonl(f, task=name)
        exs = []
        for ex in it:
            exs.append(ex)
            if max_examples and len(exs) >= max_examples:
                break
        tasks[name] = exs
    return tasks


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description="Flag train/eval task pairs sharing 13-grams (paper section 2.3)")
    p.add_argument("--train", nargs="+", required=True)
    p.add_argument("--eval", nargs="+", required=True)
    p.add_argument("--out", default="leakage_report", help="output prefix: writes PREFIX.json and PREFIX.md")
    p.add_argument("--ngram", type=int, default=NGRAM)
    p.add_argument("--threshold", type=float, default=THRESHOLD)
    p.add_argument("--max-examples", type=int, default=None, help="per task")
    p.add_argument("--template_share", type=float, default=TEMPLATE_SHARE,
                   help="n-grams in more than this share of one task's examples are its template (<= 0: keep all)")
    p.add_argument("--evidence_per_pair", type=int, default=EVIDENCE_PER_PAIR,
                   help="flagged eval examples named (with their closest train example) per pair (<= 0: all)")
    a = p.parse_args(argv)
    report = find_leaks(load_task_paths(a.train, a.max_examples), load_task_paths(a.eval, a.max_examples),
                        n=a.ngram, threshold=a.threshold, template_share=a.template_share if a.template_share > 0 else None,
                        evidence_per_pair=a.evidence_per_pair if a.evidence_per_pair > 0 else None)
    jp, mp = write_report(report, a.out)
    print(f"{len(report['pairs'])} flagged pairs; wrote {jp} and {mp}")
    return report


if __name__ == "__main__":
    main()
