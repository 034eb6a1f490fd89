"""Gin for training runs: configurable registration, search paths, REQUIRED checks, clean errors.

T5X conventions: `--gin_file` (repeatable) and `--gin.KEY=VALUE` bindings; the repo's `gin/` folder
is on the search path, so `include 'models/opt_125m.gin'` and `--gin_file=runs/finetune.gin` resolve
from anywhere. Run files mark what the user must set as `%gin.REQUIRED` macros; all unset ones are
reported together, up front, before any device work.

Configurables are registered here with `gin.external_configurable`, so `optiml_jax.models` and the
training modules themselves never import gin.
"""

from __future__ import annotations

import pathlib
import re
from collections.abc import Sequence

import gin

import optiml_jax

REQUIRED_MACROS = ("MODEL_DIR", "MIXTURE_OR_TASK_NAME", "TASK_FEATURE_LENGTHS", "TRAIN_STEPS", "BATCH_SIZE",
                   "INITIAL_CHECKPOINT_PATH")


class GinConfigError(ValueError):
    """A gin file or binding is wrong; the message names the file/line or binding at fault."""


def gin_search_paths() -> list[pathlib.Path]:
    """The repo's `gin/` folder (located relative to the package), if present."""
    repo_gin = pathlib.Path(optiml_jax.__file__).resolve().parents[1] / "gin"
    return [p for p in (repo_gin,) if p.is_dir()]


_CONFIGURED: dict = {}


def register_configurables() -> None:
    """Make the training entry points known to gin (idempotent)."""
    if _CONFIGURED:
        return
    from optiml_jax.training import model_config, partitioning, synthetic_data, train_loop

    _CONFIGURED["train"] = gin.external_configurable(train_loop.train, "train")
    gin.external_configurable(model_config.opt_config, "opt_config")
    gin.external_configurable(model_config.llama_config, "llama_config")
    gin.external_configurable(partitioning.make_partitioner, "make_partitioner")
    gin.external_configurable(partitioning.standard_rules, "standard_rules")
    gin.external_configurable(synthetic_data.synthetic_stream, "synthetic_stream")


def configured_train():
    """`train_loop.train` with the parsed gin bindings applied."""
    register_configurables()
    return _CONFIGURED["train"]


def unset_required() -> list[str]:
    """Every binding still set to `%gin.REQUIRED` (macros by name, other bindings as scope/selector.param)."""
    from gin import config as gin_internal

    missing = []
    for (scope, selector), bindings in gin_internal._CONFIG.items():  # noqa: SLF001 (gin has no public iterator)
        for name, value in bindings.items():
            if (isinstance(value, gin_internal.ConfigurableReference)
                    and value.configurable.wrapped == gin_internal._retrieve_constant  # noqa: SLF001
                    and value.scoped_configurable_fn() is gin.REQUIRED):
                if selector == "gin.macro":
                    missing.append(scope)
                else:
                    missing.append(f"{scope + '/' if scope else ''}{selector}.{name}")
    return sorted(missing)


_LITERAL_START = re.compile(r"""^\s*(['"%@\[\(\{\-+.0-9]|True\b|False\b|None\b)""")


def normalise_binding(binding: str) -> str:
    """`KEY=VALUE` -> a gin binding; a bare VALUE that is no gin literal is quoted (paths, task names)."""
    if "=" not in binding:
        raise GinConfigError(f"--gin.{binding}: expected --gin.KEY=VALUE")
    key, value = binding.split("=", 1)
    key = key.strip()
    if not _LITERAL_START.match(value):
        value = repr(value)
    return f"{key} = {value}"


def _prepend_search_paths(paths: list[str]) -> None:
    """Our folders go *before* gin's default '' prefix: otherwise gin's Python-package reader tries
    `include 'models/x.gin'` as package `models` and crashes on namespace packages (e.g. tests/models)."""
    from gin import config as gin_internal

    prefixes = gin_internal._LOCATION_PREFIXES  # noqa: SLF001 (gin only offers append)
    for p in reversed(paths):
        if p in prefixes:
            prefixes.remove(p)
        prefixes.insert(0, p)


def _resolve_gin_file(name: str, paths: list[str]) -> str:
    """An absolute path for a --gin_file given relative to the working directory or a search path.

    `gin/runs/x.gin` (the README's spelling, relative to the repository root) also resolves from any other
    working directory: a search path ending in `gin` is tried with that leading `gin/` removed.
    """
    names = [name]
    if pathlib.PurePath(name).parts[:1] == ("gin",):
        names.append(str(pathlib.PurePath(*pathlib.PurePath(name).parts[1:])))
    for candidate in [pathlib.Path(name)] + [pathlib.Path(p) / n for p in paths for n in names]:
        if candidate.is_file():
            return str(candidate.absolute())
    raise GinConfigError(f"--gin_file={name}: no such file (looked in the working directory and {paths})")


def parse_gin(gin_files: Sequence[str], bindings: Sequence[str] = (), search_paths: Sequence[str] = (),
              check_required: bool = True) -> None:
    """Parse files and bindings (on a clean config), then fail with one message on any unset REQUIRED."""
    register_configurables()
    gin.clear_config()
    paths = [str(pathlib.Path(p).absolute()) for p in search_paths] + [str(p) for p in gin_search_paths()]
    _prepend_search_paths(paths)
    files = [_resolve_gin_file(str(f), paths) for f in gin_files]
    try:
        gin.parse_config_files_and_bindings(files, list(bindings), finalize_config=False, skip_unknown=False)
    except (ValueError, KeyError, SyntaxError, TypeError, OSError) as e:
        raise GinConfigError(f"gin configuration error: {e}") from e
    if check_required:
        missing = unset_required()
        if missing:
            raise GinConfigError(
                "required gin settings are unset: " + ", ".join(missing)
                + ". Set them with --gin.NAME=VALUE or in a --gin_file.")
    try:
        gin.finalize()
    except (ValueError, KeyError, TypeError) as e:
        raise GinConfigError(f"gin configuration error: {e}") from e


def write_configs(model_dir: str | pathlib.Path) -> None:
    """`config.gin` (everything parsed) and `operative_config.gin` (what was actually used so far)."""
    model_dir = pathlib.Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "config.gin").write_text(gin.config_str())
    (model_dir / "operative_config.gin").write_text(gin.operative_config_str())
