"""What `MIXTURE_OR_TASK_NAME` names, decided in one place for every run file (issue #21).

A run trains on exactly the task or mixture its name resolves to:
  * any registered seqio task or mixture: a user's (MIXTURE_OR_TASK_MODULE, --module_import) or the library's own
    (`optiml_jax.tasks.registrations`, the mini-benchmark: imported here when a name is not yet registered), or
  * an OPT-IML Bench mixture (`<MIXTURE_PREFIX>_train`, `<MIXTURE_PREFIX>_eval_<level>`), registered here on demand
    from the local data that `gin/bench/opt_iml_bench.gin`'s macros name, the first time such a name is asked for.
Anything else is one `UnknownMixtureError` naming the setting and the closest registered names. The name never
depends on which stream factory a gin file binds: there is one (`get_train_stream`), and random tokens come only
from the explicit `gin/runs/smoke_synthetic.gin`.

Errors while reading the bench's files are *not* turned into "unknown name": they propagate with the file and task
they name (`BenchDataError`, the tokenizer's own error), so a damaged file is never blamed on the mixture name.
"""

from __future__ import annotations

import difflib
import logging

import gin

log = logging.getLogger(__name__)

BENCH_SOURCE_MACROS = ("NIV2_DATA_DIR", "COT_DATA_DIR", "PROMPTSOURCE_TEMPLATES_DIR and PROMPTSOURCE_DATA_DIR",
                       "FLAN_TEMPLATES_FILE and FLAN_DATA_DIR", "TFDS_SOURCES", "EXTRA_JSONL_SOURCES")
_BENCH_REGISTERED: dict = {}  # the bench's bindings last registered in this process ('key') and its tasks


class UnknownMixtureError(ValueError):
    """MIXTURE_OR_TASK_NAME (or another setting naming a task) resolves to nothing."""


def registered_names() -> set[str]:
    import seqio

    return set(seqio.TaskRegistry.names()) | set(seqio.MixtureRegistry.names())


def _bench_bindings() -> dict | None:
    """register_opt_iml_bench's gin bindings with macros resolved; None when no bench file is in the config."""
    try:
        bound = gin.get_bindings("register_opt_iml_bench", resolve_references=True)
    except (ValueError, KeyError):
        return None
    return bound if "tokenizer_dir" in bound else None


def _bench_prefix() -> str | None:
    """The bench's mixture prefix as gin configures it (MIXTURE_PREFIX), or the library default."""
    from optiml_jax.tasks.opt_iml_bench import MIXTURE_PREFIX

    bound = _bench_bindings()
    return bound.get("mixture_prefix", MIXTURE_PREFIX) if bound is not None else MIXTURE_PREFIX


def is_bench_mixture_name(name: str) -> bool:
    from optiml_jax.tasks.metadata import LEVELS

    prefix = _bench_prefix()
    return bool(prefix) and name in {f"{prefix}_train"} | {f"{prefix}_eval_{level}" for level in LEVELS}


def _bench_configured() -> bool:
    """gin/bench/opt_iml_bench.gin (or an equivalent binding) is part of this configuration."""
    return _bench_bindings() is not None


def register_configured_bench(name: str, what: str) -> list[str]:
    """Register OPT-IML Bench from the gin-configured local data, once per configuration and process."""
    from optiml_jax.tasks.opt_iml_bench import register_opt_iml_bench

    if not _bench_configured():
        raise UnknownMixtureError(
            f"{what} = {name!r} is an OPT-IML Bench mixture, registered from your local copy of its data: add "
            "--gin_file=gin/bench/opt_iml_bench.gin and set TOKENIZER_DIR (or its older name OPT_TOKENIZER_DIR) and at least one of "
            f"{', '.join(BENCH_SOURCE_MACROS)}")
    key = repr(sorted(_bench_bindings().items()))  # other data dirs in the same process register anew
    if _BENCH_REGISTERED.get("key") != key:
        with gin.unlock_config():  # registering imports readers that define gin configurables; gin may be locked
            _BENCH_REGISTERED.update(key=key, tasks=register_opt_iml_bench())
    tasks = _BENCH_REGISTERED["tasks"]
    if not tasks:
        raise UnknownMixtureError(
            f"{what} = {name!r}: OPT-IML Bench registered no task, since no source is set: set at least one of "
            f"{', '.join(BENCH_SOURCE_MACROS)} (gin/bench/opt_iml_bench.gin)")
    return tasks


def ensure_registered(name, what: str = "MIXTURE_OR_TASK_NAME") -> None:
    """Make `name` resolvable or raise one line saying why not (see the module docstring)."""
    if not isinstance(name, str) or not name:
        raise UnknownMixtureError(f"{what} = {name!r}: must be the name of a registered task or mixture")
    with gin.unlock_config():  # importing defines gin configurables; the CLI has locked the config by now
        import optiml_jax.tasks.registrations  # noqa: F401  (the library's own tasks: the mini-benchmark; no I/O)
        import optiml_jax.tasks.opt_iml_bench  # noqa: F401

    if is_bench_mixture_name(name) and (_bench_configured() or name not in registered_names()):
        # registered from *this* configuration's data macros, even when an earlier run in this process (a
        # notebook) registered the name from other directories
        tasks = register_configured_bench(name, what)
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
