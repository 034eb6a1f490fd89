"""Registers the OPT-IML Bench tasks whose data the user has locally; gin macros name the data (no code per reader).

    python -m optiml_jax.tasks list --gin_file=gin/bench/opt_iml_bench.gin \\
        --gin.NIV2_DATA_DIR=../shared/data/niv2/tasks --gin.OPT_TOKENIZER_DIR=../shared/data/opt_tokenizer

`register_opt_iml_bench` registers every configured source and skips unconfigured ones with a logged message:
- NIv2 (`NIV2_DATA_DIR`: task JSON files) -> `niv2_<file stem>`;
- Reasoning (`COT_DATA_DIR`: FLAN's CoT `<name>_train.tsv`) -> `cot_<name>`;
- PromptSource (`PROMPTSOURCE_TEMPLATES_DIR` + `PROMPTSOURCE_DATA_DIR`, one local dataset folder per dataset:
  `<data dir>/<dataset>[/<subset>]/{train,validation,test}.{jsonl,json,parquet,csv,tsv}` or a saved HF dataset)
  -> `ps_<dataset>[_<subset>]`;
- FLAN (`FLAN_TEMPLATES_FILE` + `FLAN_DATA_DIR`: `<data dir>/<task without flan_ | pattern key>/<split>.jsonl`)
  -> `flan_<dataset>`;
- TFDS (`TFDS_SOURCES`: {task: {"name", "data_dir", "splits": {our split: tfds split}, "source_key",
  "target_key", "instruction"}}) and metaseq src/tgt JSONL (`EXTRA_JSONL_SOURCES`: {task: {split: path,
  "instruction": str}}) for any other catalog task (CrossFit, ExMix, T5, UnifiedSKG, dialogue, pre-training).
Only catalog tasks are registered (`load_catalog`, with `load_catalog.extra_files` for more collections).

Split policy (paper 2.3/5.4), from the task's level under the chosen split (`SPLIT_NAME`):
- one pool of instances (NIv2 file, CoT TSV): evaluation (`test`) = the first `eval_examples` instances with distinct
  normalized inputs (`instance_splits.carve_pool`; a repeat of one is never trained on); a fully
  supervised task trains on the rest; a training-only task trains on everything;
- datasets with their own splits: evaluation = `validation` (else `test`; else the pool rule on `train`);
- a held-out task (fully held-out category or partially supervised) gets no `train` split at all.
Mixtures: `<prefix>_train` (recipe rates over the registered tasks that `trainable_tasks` allows, so no evaluation
task of the split and no task sharing a held-out task's data source is trained on) and `<prefix>_eval_<level>`.
Readers run lazily, when a split is first read: registration checks that files and directories exist, and the
training mixture's rates need each training task's example count, so its train splits are read then, unless a
counts file (`TASK_COUNTS_FILE`, {task: {split: count}}) gives the counts (full NIv2: thousands of files).
`MIXTURE_PREFIX = None` registers no mixtures (e.g. to inspect single tasks quickly).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import logging
import pathlib
from typing import Callable, Iterable, Mapping

import gin

from optiml_jax.lazy_imports import renamed_attributes
from optiml_jax.paths import user_path
from optiml_jax.sources import cot_reader
from optiml_jax.sources import niv2_reader
from optiml_jax.tasks.catalog.entries import catalog_rows, load_catalog
from optiml_jax.sources.flan_reader import load_patterns, read_flan_task
from optiml_jax.sources.jsonl_reader import read_src_tgt_jsonl, read_tfds
from optiml_jax.sources.local_datasets import find_split_file, iter_rows
from optiml_jax.sources.promptsource_reader import read_promptsource_task
from optiml_jax.sources.promptsource_templates import load_templates_file
from optiml_jax.sources.raw_examples import SourceDataError
from optiml_jax.tasks.catalog.splits import get_split, trainable_tasks
from optiml_jax.tasks import mixtures, registry
from optiml_jax.tasks.instance_splits import carve_pool
from optiml_jax.tasks.metadata import LEVELS, GeneralizationSplit, TaskInfo
from optiml_jax.vocabularies.directories import load_vocabulary
from optiml_jax.vocabularies.tokenizer_files import OPTVocabularyError

log = logging.getLogger(__name__)

EVAL_EXAMPLES = 100
MIXTURE_PREFIX = "opt_iml_bench"
DATASET_SPLITS = ("train", "validation", "test")
EVAL_SPLITS = ("validation", "test")  # a dataset's evaluation split: the first one present
SplitFn = Callable[[], Iterable[dict]]


@dataclasses.dataclass
class _Context:
    tasks: dict[str, TaskInfo]
    rows: dict[str, dict]
    split: GeneralizationSplit
    eval_examples: int
    template_seed: int

    def catalog_task(self, name: str, source: str) -> TaskInfo:
        if name not in self.tasks:
            raise SourceDataError(f"{source}: task is not in the catalog (add a row to a optiml_jax/tasks/catalog/*_tasks.tsv "
                                  "file or bind load_catalog.extra_files)", task=name)
        return self.tasks[name]

    def pool(self, name: str, read_all: SplitFn) -> dict[str, SplitFn]:
        """Splits of a task whose instances come as one pool (NIv2, CoT): evaluation = the first N instances with
        distinct normalized inputs, training = the rest less any repeat of an evaluation input (`carve_pool`)."""
        level, n = self.split.level(self.tasks[name]), self.eval_examples
        if level is None:
            return {"train": read_all}

        def carve():
            evaluation, rest, dropped = carve_pool(read_all(), n)
            if dropped:
                log.info("%s: %d repeated instance(s) left out so evaluation and training inputs are disjoint",
                         name, dropped)
            return evaluation, rest

        if level != "fully_supervised":
            return {"test": lambda: carve()[0]}

        def rest():
            out = carve()[1]
            if not out:
                raise SourceDataError(f"fully supervised task has no instances left for training after the first "
                                      f"{n} evaluation instances", task=name)
            return out
        return {"train": rest, "test": lambda: carve()[0]}

    def native(self, name: str, readers: Mapping[str, SplitFn]) -> dict[str, SplitFn]:
        """Splits of a dataset with its own train/validation/test files."""
        eval_split = next((s for s in EVAL_SPLITS if s in readers), None)
        if eval_split is None:
            return self.pool(name, readers["train"])
        level = self.split.level(self.tasks[name])
        if level is None:
            return {"train": readers["train"]} if "train" in readers else {"test": readers[eval_split]}
        if level == "fully_supervised" and "train" in readers:
            return {"train": readers["train"], "test": readers[eval_split]}
        if "train" in readers:
            log.debug("%s is held out (%s): its train split is not registered", name, level)
        return {"test": readers[eval_split]}

    def catalog_of(self, collection: str) -> list[tuple[str, str]]:
        """[(task name, reader_key)] of one collection, in catalog order."""
        return [(n, r["reader_key"]) for n, r in self.rows.items() if r["collection"] == collection]


def _existing_dir(path, what: str, macro: str) -> pathlib.Path:
    p = user_path(path, macro)  # local or a bucket (optiml_jax.paths)
    if not p.is_dir():
        raise SourceDataError(f"{what} does not exist or is not a directory (set {macro})", file=str(p))
    return p


def local_splits(dataset_dir: pathlib.Path) -> list[str]:
    """Which of train/validation/test a local dataset folder has (a single file counts as `train`)."""
    if dataset_dir.is_file():
        return ["train"]
    dataset_dict = dataset_dir / "dataset_dict.json"
    if dataset_dict.is_file():
        try:
            listed = json.loads(dataset_dict.read_text())["splits"]
        except (ValueError, KeyError) as e:
            raise SourceDataError(f"unreadable dataset_dict.json: {e}", file=str(dataset_dict)) from None
        return [s for s in DATASET_SPLITS if s in listed]
    found = []
    for s in DATASET_SPLITS:
        try:
            find_split_file(dataset_dir, s)
        except SourceDataError:
            continue
        found.append(s)
    if (dataset_dir / "dataset_info.json").is_file() and not found:
        found = ["train"]  # a saved single-split HF dataset
    return found


# ----- one function per source: {task name: {split: reader}} -----------------------------------------------------

def _niv2_examples(path: pathlib.Path) -> Iterable[dict]:
    return niv2_reader.load_task(path).examples()


def niv2_sources(data_dir, ctx: _Context) -> dict[str, dict[str, SplitFn]]:
    out, unknown = {}, []
    for path in niv2_reader.task_files(data_dir):
        name = niv2_reader.task_name(path)
        if name not in ctx.tasks:
            unknown.append(name)
            continue
        out[name] = ctx.pool(name, functools.partial(_niv2_examples, path))
    if unknown:
        log.warning("NIv2: %d task file(s) not in the catalog were not registered: %s", len(unknown),
                    ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else ""))
    return out


def cot_sources(data_dir, ctx: _Context) -> dict[str, dict[str, SplitFn]]:
    by_key = {key: name for name, key in ctx.catalog_of("reasoning")}
    out, unknown = {}, []
    for name, path in cot_reader.cot_files(data_dir).items():
        if name not in ctx.tasks:
            name = by_key.get(name.removeprefix("cot_"), name)
        if name not in ctx.tasks:
            unknown.append(name)
            continue
        out[name] = ctx.pool(name, functools.partial(cot_reader.read_cot_tsv, path, name))
    if unknown:
        log.warning("CoT: file(s) not in the catalog were not registered: %s", ", ".join(unknown))
    return out


def _promptsource_examples(templates_file, dataset_dir, split, task, seed, all_templates) -> Iterable[dict]:
    templates = load_templates_file(templates_file)
    rows = iter_rows(find_split_file(dataset_dir, split), split)
    return read_promptsource_task(templates, rows, task=task, seed=seed, all_templates=all_templates,
                                  skip_failing_templates=all_templates)


def promptsource_sources(templates_dir, data_dir, ctx: _Context) -> dict[str, dict[str, SplitFn]]:
    """Evaluation splits use every original-task template (dropping ones that fail), training one per row."""
    templates_dir = _existing_dir(templates_dir, "PromptSource templates directory", "PROMPTSOURCE_TEMPLATES_DIR")
    data_dir = _existing_dir(data_dir, "PromptSource local dataset directory", "PROMPTSOURCE_DATA_DIR")
    out = {}
    for name, key in ctx.catalog_of("promptsource"):
        dataset_dir = data_dir / key
        if not dataset_dir.exists():
            continue
        templates_file = templates_dir / key / "templates.yaml"
        if not templates_file.is_file():
            raise SourceDataError("local dataset has no PromptSource templates.yaml", file=str(templates_file),
                                  task=name)
        splits = local_splits(dataset_dir)
        if not splits:
            raise SourceDataError(f"no split file ({'/'.join(DATASET_SPLITS)}.jsonl, .json, .parquet, .csv, .tsv or a "
                                  "saved Hugging Face dataset)", file=str(dataset_dir), task=name)
        out[name] = ctx.native(name, {s: functools.partial(_promptsource_examples, templates_file, dataset_dir, s,
                                                           name, ctx.template_seed, s != "train") for s in splits})
    if not out:
        raise SourceDataError("no catalog dataset found under the PromptSource data directory (expected "
                              "<dir>/<dataset>[/<subset>]/train.jsonl, e.g. super_glue/copa/train.jsonl)",
                              file=str(data_dir))
    log.info("PromptSource: %d dataset(s) with local data registered", len(out))
    return out


def _flan_examples(patterns, dataset_dir, split, task, seed, all_templates) -> Iterable[dict]:
    path = find_split_file(dataset_dir, split)
    return read_flan_task(patterns, iter_rows(path, split), task=task, seed=seed, all_templates=all_templates,
                          file=str(path))


def flan_sources(templates_file, data_dir, ctx: _Context) -> dict[str, dict[str, SplitFn]]:
    patterns = load_patterns(templates_file)
    data_dir = _existing_dir(data_dir, "FLAN local dataset directory", "FLAN_DATA_DIR")
    rows = ctx.catalog_of("flan")
    key_uses = collections.Counter(key for _, key in rows)
    out = {}
    for name, key in rows:
        candidates = [data_dir / name.removeprefix("flan_")] + ([data_dir / key] if key_uses[key] == 1 else [])
        dataset_dir = next((d for d in candidates if d.exists()), None)
        if dataset_dir is None:
            continue
        if key not in patterns:
            raise SourceDataError(f"the FLAN templates file has no patterns for {key!r}", file=str(templates_file),
                                  task=name)
        splits = local_splits(dataset_dir)
        if not splits:
            raise SourceDataError("no split file (train/validation/test .jsonl, .json, .parquet, .csv, .tsv)",
                                  file=str(dataset_dir), task=name)
        out[name] = ctx.native(name, {s: functools.partial(_flan_examples, patterns[key], dataset_dir, s, name,
                                                           ctx.template_seed, False) for s in splits})
    if not out:
        raise SourceDataError("no catalog dataset found under the FLAN data directory (expected "
                              "<dir>/<task without flan_>/train.jsonl, e.g. rte/train.jsonl)", file=str(data_dir))
    log.info("FLAN: %d dataset(s) with local data registered", len(out))
    return out


_TFDS_KEYS = {"name", "data_dir", "splits", "source_key", "target_key", "instruction"}


def tfds_spec_sources(specs: Mapping[str, Mapping], ctx: _Context) -> dict[str, dict[str, SplitFn]]:
    out = {}
    for name, spec in specs.items():
        ctx.catalog_task(name, "TFDS_SOURCES")
        unknown = set(spec) - _TFDS_KEYS
        if "name" not in spec or unknown:
            raise SourceDataError(f"TFDS_SOURCES entry needs 'name' and only keys {sorted(_TFDS_KEYS)} "
                                  f"(unknown: {sorted(unknown)})", task=name)
        split_map = dict(spec.get("splits") or {"train": "train"})
        bad = set(split_map) - set(DATASET_SPLITS)
        if bad:
            raise SourceDataError(f"TFDS_SOURCES splits must be among {DATASET_SPLITS}, got {sorted(bad)}", task=name)
        kw = {k: spec[k] for k in ("data_dir", "source_key", "target_key", "instruction") if k in spec}
        out[name] = ctx.native(name, {s: functools.partial(read_tfds, spec["name"], task=name, split=tfds_split, **kw)
                                      for s, tfds_split in split_map.items()})
    return out


def jsonl_spec_sources(specs: Mapping[str, Mapping], ctx: _Context) -> dict[str, dict[str, SplitFn]]:
    out = {}
    for name, spec in specs.items():
        ctx.catalog_task(name, "EXTRA_JSONL_SOURCES")
        spec = dict(spec)
        instruction = spec.pop("instruction", "")
        bad = set(spec) - set(DATASET_SPLITS)
        if bad or not spec:
            raise SourceDataError(f"EXTRA_JSONL_SOURCES entry must map splits among {DATASET_SPLITS} to files "
                                  f"(unknown keys: {sorted(bad)})", task=name)
        readers = {}
        for split, path in spec.items():
            path = user_path(path, "EXTRA_JSONL_SOURCES")
            if not path.is_file():
                raise SourceDataError(f"JSONL file for split {split!r} does not exist", file=str(path), task=name)
            readers[split] = functools.partial(read_src_tgt_jsonl, path, task=name, instruction=instruction)
        out[name] = ctx.native(name, readers)
    return out


# ----- registration -------------------------------------------------------------------------------------------

def register_split_mixtures(names: Iterable[str], split: GeneralizationSplit, catalog: list[TaskInfo],
                            prefix: str = MIXTURE_PREFIX) -> dict[str, list[str]]:
    """`<prefix>_train` over the registered tasks `trainable_tasks(split)` allows (with a train split) and
    `<prefix>_eval_<level>` over the registered evaluation tasks; returns {mixture: tasks}."""
    names = list(names)
    allowed = {t.name for t in trainable_tasks(split, catalog)}
    by_name = {t.name: t for t in catalog}
    out = {f"{prefix}_train": [n for n in names if n in allowed and "train" in registry.get_task(n).splits]}
    if out[f"{prefix}_train"]:
        mixtures.register_recipe_mixture(f"{prefix}_train", out[f"{prefix}_train"])
    else:
        log.warning("no registered task is trainable under split %r: %s_train not registered", split.name, prefix)
        del out[f"{prefix}_train"]
    for level in LEVELS:
        tasks = [n for n in names if split.level(by_name[n]) == level]
        if tasks:
            mixtures.register_rate_mixture(f"{prefix}_eval_{level}", {t: 1.0 for t in tasks})
            out[f"{prefix}_eval_{level}"] = tasks
    return out


@gin.configurable
def register_opt_iml_bench(niv2_data_dir: str | None = None, cot_data_dir: str | None = None,
                           promptsource_templates_dir: str | None = None, promptsource_data_dir: str | None = None,
                           flan_templates_file: str | None = None, flan_data_dir: str | None = None,
                           tfds_sources: Mapping[str, Mapping] | None = None,
                           jsonl_sources: Mapping[str, Mapping] | None = None,
                           tokenizer_dir: str | None = None, split_name: str = "opt_iml_paper",
                           eval_examples: int = EVAL_EXAMPLES, template_seed: int = 0,
                           mixture_prefix: str | None = MIXTURE_PREFIX, counts_file: str | None = None,
                           replace: bool = True, opt_tokenizer_dir: str | None = None) -> list[str]:
    """Registers every catalog task found in the configured sources (see the module docstring); returns the names.

    `tokenizer_dir` (gin: `TOKENIZER_DIR`; `opt_tokenizer_dir` / `OPT_TOKENIZER_DIR` is its older name): OPT's BPE or
    any model family's `tokenizer.json`; the tasks are tokenized, and their examples end, in its ids.

    `replace=True` makes registration repeatable in one process (re-running with other directories); the
    split is registered with the task registry so `python -m optiml_jax.tasks list` shows levels.
    """
    vocab = _vocabulary(tokenizer_dir, opt_tokenizer_dir)
    catalog = load_catalog()
    split = get_split(split_name, catalog)
    ctx = _Context({t.name: t for t in catalog}, catalog_rows(), split, eval_examples, template_seed)
    ps_set, flan_set = promptsource_templates_dir or promptsource_data_dir, flan_templates_file or flan_data_dir
    sources = [
        ("NIv2", "NIV2_DATA_DIR", niv2_data_dir, lambda: niv2_sources(niv2_data_dir, ctx)),
        ("CoT", "COT_DATA_DIR", cot_data_dir, lambda: cot_sources(cot_data_dir, ctx)),
        ("PromptSource", "PROMPTSOURCE_TEMPLATES_DIR and PROMPTSOURCE_DATA_DIR", ps_set,
         lambda: promptsource_sources(promptsource_templates_dir, promptsource_data_dir, ctx)),
        ("FLAN", "FLAN_TEMPLATES_FILE and FLAN_DATA_DIR", flan_set,
         lambda: flan_sources(flan_templates_file, flan_data_dir, ctx)),
        ("TFDS", "TFDS_SOURCES", tfds_sources, lambda: tfds_spec_sources(tfds_sources, ctx)),
        ("JSONL", "EXTRA_JSONL_SOURCES", jsonl_sources, lambda: jsonl_spec_sources(jsonl_sources, ctx)),
    ]
    pairs = {"PromptSource": (promptsource_templates_dir, promptsource_data_dir),
             "FLAN": (flan_templates_file, flan_data_dir)}
    found: dict[str, dict[str, SplitFn]] = {}
    origin: dict[str, str] = {}
    for label, macro, configured, read in sources:
        if not configured:
            log.info("OPT-IML Bench: %s not configured (%s unset): skipped", label, macro)
            continue
        pair = pairs.get(label)
        if pair is not None and not all(pair):
            raise SourceDataError(f"{label} needs both {macro} (only one is set)")
        for name, splits in read().items():
            if name in found:
                raise SourceDataError(f"task found in both {origin[name]} and {label}", task=name)
            found[name], origin[name] = splits, label
        log.info("OPT-IML Bench: %s registered %d task(s)", label, sum(1 for o in origin.values() if o == label))
    counts = registry.read_counts_file(counts_file) if counts_file else {}
    for name, splits in found.items():
        known = {s: n for s, n in counts.get(name, {}).items() if s in splits}
        registry.register_instruction_task(ctx.tasks[name], splits, vocab, known, replace=replace)
    registry.register_generalization_split(split)
    if mixture_prefix and found:
        register_split_mixtures(found, split, catalog, mixture_prefix)
    return list(found)


def _vocabulary(tokenizer_dir, opt_tokenizer_dir=None):
    """The run's vocabulary: OPT's BPE, or any family's tokenizer.json (`load_vocabulary`); TOKENIZER_DIR or its
    older name OPT_TOKENIZER_DIR (both set to different directories is an error)."""
    if tokenizer_dir is not None and opt_tokenizer_dir is not None and str(tokenizer_dir) != str(opt_tokenizer_dir):
        raise OPTVocabularyError(f"TOKENIZER_DIR = {tokenizer_dir!r} and OPT_TOKENIZER_DIR = {opt_tokenizer_dir!r} "
                                 "disagree: set one of them")
    tokenizer_dir = tokenizer_dir if tokenizer_dir is not None else opt_tokenizer_dir
    if tokenizer_dir is None:
        raise OPTVocabularyError("OPT-IML Bench needs a tokenizer: set TOKENIZER_DIR (or OPT_TOKENIZER_DIR) to OPT's "
                                 "vocab.json + merges.txt or to a directory with the model's tokenizer.json")
    return load_vocabulary(tokenizer_dir)


@gin.configurable
def register_jsonl_tasks(sources: dict = gin.REQUIRED, tokenizer_dir: str | None = None,
                         split_name: str = "opt_iml_paper", replace: bool = False,
                         opt_tokenizer_dir: str | None = None) -> list[str]:
    """{catalog task name: {"train": path.jsonl, "test": ..., "instruction": ...}} of metaseq src/tgt files ->
    registered tasks, with the split policy of `register_opt_iml_bench` (held-out tasks get no train split)."""
    vocab = _vocabulary(tokenizer_dir, opt_tokenizer_dir)
    catalog = load_catalog()
    ctx = _Context({t.name: t for t in catalog}, catalog_rows(), get_split(split_name, catalog), EVAL_EXAMPLES, 0)
    found = jsonl_spec_sources(sources, ctx)
    for name, splits in found.items():
        registry.register_instruction_task(ctx.tasks[name], splits, vocab, replace=replace)
    return list(found)


# Renamed names: one release of a clear error pointing to the new one.
__getattr__ = renamed_attributes(__name__, {"register_bench_mixtures": "register_split_mixtures"},
                                 " (it registers a split's <prefix>_train and <prefix>_eval_<level> mixtures)")
