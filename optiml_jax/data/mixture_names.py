"""What `MIXTURE_OR_TASK_NAME` names, decided in one place for every run file (issue #21).

A run trains on exactly the task or mixture its name resolves to:
  * any registered seqio task or mixture: a user's (MIXTURE_OR_TASK_MODULE, --module_import) or the library's own
    (`optiml_jax.tasks.registrations`, the mini-benchmark: imported here when a name is not yet registered), or
  * an OPT-IML Bench mixture (`<MIXTURE_PREFIX>_train`, `<MIXTURE_PREFIX>_eval_<level>`), registered here on demand
    from the local data that `gin/bench/opt_iml_bench.gin`'s macros name, the first time such a name is asked for.
Anything else is one `UnknownMixtureError` naming the setting and the closest registered names. The name never
depends on which stream factory a gin file binds: there is one (`get_train_stream`), and random tokens come only
from the explicit `gin/runs/smoke_synthetic.gin`.

The run's tokenizer decides the ids (issue 22): `run_tokenizer(TOKENIZER_DIR, INITIAL_CHECKPOINT_PATH)` is
TOKENIZER_DIR's tokenizer, else the tokenizer files in the initial checkpoint's directory (a Hugging Face directory,
or a run's MODEL_DIR, which keeps them). Given one, `ensure_registered` re-registers the library's tasks of the name
for it (the mini-benchmark; OPT-IML Bench when no tokenizer of its own is bound): the same formatted text, other ids. A
user's own task in another vocabulary is an error naming both (`TokenizerMismatchError`): it would train in ids
the model does not read that way.

Errors while reading OPT-IML Bench's files are *not* turned into "unknown name": they propagate with the file and task
they name (`SourceDataError`, the tokenizer's own error), so a damaged file is never blamed on the mixture name.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
import pathlib

import gin

from optiml_jax.lazy_imports import renamed_attributes

log = logging.getLogger(__name__)

OPT_IML_BENCH_SOURCE_MACROS = ("NIV2_DATA_DIR", "COT_DATA_DIR", "PROMPTSOURCE_TEMPLATES_DIR and PROMPTSOURCE_DATA_DIR",
                       "FLAN_TEMPLATES_FILE and FLAN_DATA_DIR", "TFDS_SOURCES", "EXTRA_JSONL_SOURCES")
_OPT_IML_BENCH_REGISTERED: dict = {}  # OPT-IML Bench's bindings last registered in this process ('key') and its tasks


class UnknownMixtureError(ValueError):
    """MIXTURE_OR_TASK_NAME (or another setting naming a task) resolves to nothing."""


class TokenizerMismatchError(ValueError):
    """A user's task is registered in another vocabulary than the run's tokenizer (exit 2 in the CLIs)."""


@dataclasses.dataclass(frozen=True)
class RunTokenizer:
    """The run's tokenizer: its vocabulary, its directory, and the setting it came from (for messages)."""

    vocabulary: object
    directory: str
    source: str


def _has_tokenizer(d: pathlib.Path) -> bool:
    return (d / "tokenizer.json").is_file() or ((d / "vocab.json").is_file() and (d / "merges.txt").is_file())


def checkpoint_tokenizer_dir(checkpoint_path) -> pathlib.Path | None:
    """The directory holding the tokenizer files of a checkpoint path (a Hugging Face directory, a MODEL_DIR, one of
    its step dirs `MODEL_DIR/checkpoints/<step>`), or None (no tokenizer files; a URL; a metaseq file)."""
    from optiml_jax.paths import is_url

    if checkpoint_path is None or is_url(os.fspath(checkpoint_path)):
        return None
    p = pathlib.Path(os.fspath(checkpoint_path)).expanduser()
    for d in (p, p.parent.parent if p.name.isdigit() and p.parent.name == "checkpoints" else None):
        if d is not None and d.is_dir() and _has_tokenizer(d):
            return d.resolve()
    return None


_LOADED: dict = {}


def _load(directory: pathlib.Path):
    from optiml_jax.vocabularies.directories import load_vocabulary

    key = (str(directory), *(f.stat().st_mtime_ns for f in sorted(directory.iterdir()) if f.is_file()))
    if key not in _LOADED:
        _LOADED.clear()
        _LOADED[key] = load_vocabulary(directory)
    return _LOADED[key]


def run_tokenizer(tokenizer_dir=None, initial_checkpoint_path=None) -> RunTokenizer | None:
    """TOKENIZER_DIR's tokenizer, else INITIAL_CHECKPOINT_PATH's own tokenizer files, else None (each task keeps the
    vocabulary it was registered with)."""
    if tokenizer_dir is not None:
        d = pathlib.Path(os.fspath(tokenizer_dir)).expanduser().resolve()
        return RunTokenizer(_load(d), str(d), f"TOKENIZER_DIR = {str(tokenizer_dir)!r}")
    d = checkpoint_tokenizer_dir(initial_checkpoint_path)
    if d is None:
        return None
    return RunTokenizer(_load(d), str(d), f"the tokenizer of INITIAL_CHECKPOINT_PATH = {str(initial_checkpoint_path)!r}")


def same_vocabulary(a, b) -> bool:
    """The same ids for every text: equal vocabularies, or the same class over identical tokenizer contents and
    special ids (a checkpoint directory's copy of the mini-benchmark's BPE is the mini-benchmark's vocabulary)."""
    if a is b or a == b:
        return True
    if type(a) is not type(b):
        return False
    from optiml_jax.vocabularies.special_ids import special_ids_of

    tok_a = getattr(a, "tokenizer", None) or getattr(a, "_tokenizer", None)
    tok_b = getattr(b, "tokenizer", None) or getattr(b, "_tokenizer", None)
    if tok_a is None or tok_b is None or not hasattr(tok_a, "to_str"):
        return False
    return special_ids_of(a) == special_ids_of(b) and tok_a.to_str() == tok_b.to_str()


def _leaf_tasks(name: str) -> list[str]:
    import seqio

    if name in seqio.TaskRegistry.names():
        return [name]
    return sorted({t.name for t in seqio.MixtureRegistry.get(name).tasks})


def _vocabulary_name(vocabulary) -> str:
    return str(getattr(vocabulary, "path", None) or repr(vocabulary))


def match_run_tokenizer(name: str, tokenizer: RunTokenizer | None, what: str = "MIXTURE_OR_TASK_NAME") -> None:
    """The library's mini-benchmark tasks of `name` in the run's tokenizer's ids (re-registered when they are in
    other ids; back to its own BPE without a run tokenizer); a user's task in another vocabulary: one error line.
    OPT-IML Bench tasks are registered in their own tokenizer already (`register_configured_opt_iml_bench`)."""
    from optiml_jax.tasks.mini_bench import registration as mini_bench
    from optiml_jax.tasks import registry

    tasks = _leaf_tasks(name)
    opt_iml_bench = set(_OPT_IML_BENCH_REGISTERED.get("tasks") or ())
    if any(t in mini_bench.TASK_NAMES for t in tasks):
        wanted = mini_bench.VOCABULARY if tokenizer is None else tokenizer.vocabulary
        if not same_vocabulary(mini_bench.registered_vocabulary(), wanted):
            with gin.unlock_config():
                mini_bench.register(wanted)
            log.info("mini-benchmark tasks re-registered in the ids of %s", _vocabulary_name(wanted))
    if tokenizer is None:
        return
    for t in tasks:
        if t in mini_bench.TASK_NAMES or t in opt_iml_bench:
            continue
        vocab = registry.get_task(t).vocabulary
        if not same_vocabulary(vocab, tokenizer.vocabulary):
            raise TokenizerMismatchError(
                f"{what} = {name!r}: task {t!r} is registered with vocabulary {_vocabulary_name(vocab)}, but the run's "
                f"tokenizer is {tokenizer.source} ({tokenizer.directory}): register the task with that tokenizer "
                "(optiml_jax.vocabularies.load_vocabulary(dir)) or fine-tune a checkpoint of the task's tokenizer; "
                "training would read its ids with another tokenizer's meaning")


def registered_names() -> set[str]:
    import seqio

    return set(seqio.TaskRegistry.names()) | set(seqio.MixtureRegistry.names())


def _opt_iml_bench_bindings() -> dict | None:
    """register_opt_iml_bench's gin bindings with macros resolved; None when no OPT-IML Bench file is in the config."""
    try:
        bound = gin.get_bindings("register_opt_iml_bench", resolve_references=True)
    except (ValueError, KeyError):
        return None
    return bound if "tokenizer_dir" in bound else None


def _opt_iml_bench_prefix() -> str | None:
    """OPT-IML Bench's mixture prefix as gin configures it (MIXTURE_PREFIX), or the library default."""
    from optiml_jax.tasks.opt_iml_bench import MIXTURE_PREFIX

    bound = _opt_iml_bench_bindings()
    return bound.get("mixture_prefix", MIXTURE_PREFIX) if bound is not None else MIXTURE_PREFIX


def is_opt_iml_bench_mixture_name(name: str) -> bool:
    from optiml_jax.tasks.metadata import LEVELS

    prefix = _opt_iml_bench_prefix()
    return bool(prefix) and name in {f"{prefix}_train"} | {f"{prefix}_eval_{level}" for level in LEVELS}


def _opt_iml_bench_configured() -> bool:
    """gin/bench/opt_iml_bench.gin (or an equivalent binding) is part of this configuration."""
    return _opt_iml_bench_bindings() is not None


def register_configured_opt_iml_bench(name: str, what: str, tokenizer: RunTokenizer | None = None) -> list[str]:
    """Register OPT-IML Bench from the gin-configured local data, once per configuration and process; without a
    bound TOKENIZER_DIR / OPT_TOKENIZER_DIR, in the run's tokenizer (the checkpoint's)."""
    from optiml_jax.tasks.opt_iml_bench import register_opt_iml_bench

    if not _opt_iml_bench_configured():
        raise UnknownMixtureError(
            f"{what} = {name!r} is an OPT-IML Bench mixture, registered from your local copy of its data: add "
            "--gin_file=gin/bench/opt_iml_bench.gin and set TOKENIZER_DIR (or its older name OPT_TOKENIZER_DIR) and at least one of "
            f"{', '.join(OPT_IML_BENCH_SOURCE_MACROS)}")
    bound = _opt_iml_bench_bindings()
    extra = {}
    if bound.get("tokenizer_dir") is None and bound.get("opt_tokenizer_dir") is None and tokenizer is not None:
        extra["tokenizer_dir"] = tokenizer.directory
    key = repr(sorted({**bound, **extra}.items()))  # other data dirs or tokenizer in the same process register anew
    if _OPT_IML_BENCH_REGISTERED.get("key") != key:
        with gin.unlock_config():  # registering imports readers that define gin configurables; gin may be locked
            _OPT_IML_BENCH_REGISTERED.update(key=key, tasks=register_opt_iml_bench(**extra))
    tasks = _OPT_IML_BENCH_REGISTERED["tasks"]
    if not tasks:
        raise UnknownMixtureError(
            f"{what} = {name!r}: OPT-IML Bench registered no task, since no source is set: set at least one of "
            f"{', '.join(OPT_IML_BENCH_SOURCE_MACROS)} (gin/bench/opt_iml_bench.gin)")
    return tasks


def ensure_registered(name, what: str = "MIXTURE_OR_TASK_NAME", tokenizer: RunTokenizer | None = None,
                      match_tokenizer: bool = False) -> None:
    """Make `name` resolvable or raise one line saying why not (see the module docstring). `match_tokenizer`
    (training): its tasks in `tokenizer`'s ids as well (`match_run_tokenizer`)."""
    _ensure_registered(name, what, tokenizer)
    if match_tokenizer:
        match_run_tokenizer(name, tokenizer, what)


def _ensure_registered(name, what: str, tokenizer: RunTokenizer | None) -> None:
    if not isinstance(name, str) or not name:
        raise UnknownMixtureError(f"{what} = {name!r}: must be the name of a registered task or mixture")
    with gin.unlock_config():  # importing defines gin configurables; the CLI has locked the config by now
        import optiml_jax.tasks.registrations  # noqa: F401  (the library's own tasks: the mini-benchmark; no I/O)
        import optiml_jax.tasks.opt_iml_bench  # noqa: F401

    if is_opt_iml_bench_mixture_name(name) and (_opt_iml_bench_configured() or name not in registered_names()):
        # registered from *this* configuration's data macros, even when an earlier run in this process (a
        # notebook) registered the name from other directories
        tasks = register_configured_opt_iml_bench(name, what, tokenizer)
        if name in registered_names():
            return
        raise UnknownMixtureError(
            f"{what} = {name!r}: OPT-IML Bench registered {len(tasks)} task(s), none of which belongs to this mixture "
            "under SPLIT_NAME (e.g. every task found is held out); `python -m optiml_jax.tasks list` shows levels")
    if name in registered_names():
        return
    known = registered_names()
    close = difflib.get_close_matches(name, sorted(known), n=5, cutoff=0.5)
    hint = f"closest registered: {', '.join(close)}" if close else "no registered name is close"
    raise UnknownMixtureError(
        f"{what} = {name!r} is not a registered task or mixture ({len(known)} registered; {hint}). "
        "`python -m optiml_jax.tasks list` lists them; MIXTURE_OR_TASK_MODULE or --module_import imports the module "
        "that registers yours.")


# Renamed names: one release of a clear error pointing to the new one.
RENAMED = {"is_bench_mixture_name": "is_opt_iml_bench_mixture_name", "BENCH_SOURCE_MACROS": "OPT_IML_BENCH_SOURCE_MACROS",
           "register_configured_bench": "register_configured_opt_iml_bench"}
__getattr__ = renamed_attributes(__name__, RENAMED, " (bare 'bench' named five things)")
