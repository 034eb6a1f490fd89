"""The one flag and gin setup of every command (train, eval, infer, tasks, plan), in T5X's spelling.

Flags every command takes (T5X / SeqIO habits):
  --gin_file=F (repeatable)          looked up in the working directory, --gin_search_paths, and the gin/
                                     folder shipped with the package (so `gin/runs/quickstart.gin` works from
                                     any directory and from a wheel install)
  --gin.KEY=VALUE / --gin.KEY VALUE  one binding; a bare word or path is quoted for you (`--gin.MODEL_DIR=/tmp/r`)
  --gin_bindings='KEY = VALUE'       a raw gin binding, exactly as T5X takes it (repeatable)
  --gin_search_paths=A,B             extra include folders (comma list, repeatable)
  --module_import=M (repeatable)     modules whose import registers tasks/mixtures (seqio's cache_tasks_main flag)
  --tfds_data_dir=D                  seqio.set_tfds_data_dir_override
  --seqio_additional_cache_dirs=A,B  seqio.add_global_cache_dirs (where seqio.cache_tasks_main wrote caches)
Run files mark what the user must set as `%gin.REQUIRED` macros; all unset ones are reported together, before
any device work. Configurables are registered here with `gin.external_configurable`, so the library modules
(models, training) never import gin.
"""

from __future__ import annotations

import argparse
import pathlib
import re
from collections.abc import Sequence

import gin

import optiml_jax
from optiml_jax.cli.moved_bindings import moved_binding_message
from optiml_jax import lazy_imports
from optiml_jax.cli import gin_internals
from optiml_jax.paths import user_path


class GinConfigError(ValueError):
    """A gin file or binding is wrong; the message names the file/line or binding at fault."""


def gin_search_paths() -> list[pathlib.Path]:
    """The gin/ folder of a wheel install (`optiml_jax/gin`) or of the source checkout (`<repo>/gin`)."""
    found = optiml_jax.gin_dir()
    return [found] if found else []


# ---------------------------------------------------------------- argv
# A gin literal starts like one; anything else (paths, task names) given as `--gin.X=VALUE` is quoted.
_GIN_LITERAL_START = re.compile(r"""^\s*(['"%@\[\(\{\-+.0-9]|True\b|False\b|None\b)""")


def gin_value(value: str) -> str:
    """`../data/niv2` -> `'../data/niv2'`; gin literals (numbers, quoted strings, %MACROS, @refs, ...) unchanged.
    A bare relative path such as `../x` or `./x` starts with '.', so a value that starts with '.' but is no
    number is quoted too."""
    if _GIN_LITERAL_START.match(value) and not re.match(r"^\s*\.(\.|/|[^0-9])", value):
        return value
    return repr(value)


def normalise_binding(binding: str) -> str:
    """`KEY=VALUE` -> the gin binding `KEY = VALUE` (bare VALUEs quoted by `gin_value`)."""
    if "=" not in binding:
        raise GinConfigError(f"--gin.{binding}: expected --gin.KEY=VALUE")
    key, value = binding.split("=", 1)
    return f"{key.strip()} = {gin_value(value)}"


def split_argv(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Pulls `--gin.X=V` (or `--gin.X V`) out of argv; returns (rest, ["X = V", ...])."""
    rest, bindings, i = [], [], 0
    argv = list(argv)
    while i < len(argv):
        a = argv[i]
        if a.startswith("--gin.") and not a.startswith("--gin_"):
            body = a[len("--gin."):]
            if "=" not in body:
                if i + 1 >= len(argv):
                    raise GinConfigError(f"{a}: expected --gin.KEY=VALUE")
                i += 1
                body = f"{body}={argv[i]}"
            bindings.append(normalise_binding(body))
        else:
            rest.append(a)
        i += 1
    return rest, bindings


def _comma_list(value: str) -> list[str]:
    return [v for v in value.split(",") if v]


def add_gin_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of the module docstring, on any argparse parser."""
    parser.add_argument("--gin_file", action="append", default=[], help="gin file (repeatable)")
    parser.add_argument("--gin_bindings", action="append", default=[], help="raw gin binding 'K = V' (repeatable)")
    parser.add_argument("--gin_search_paths", action="append", type=_comma_list, default=[],
                        help="extra gin include folders, comma separated")
    parser.add_argument("--module_import", action="append", default=[],
                        help="module whose import registers tasks/mixtures (repeatable)")
    parser.add_argument("--tfds_data_dir", default=None, help="TFDS data dir (seqio.set_tfds_data_dir_override)")
    parser.add_argument("--seqio_additional_cache_dirs", action="append", type=_comma_list, default=[],
                        help="folders with seqio.cache_tasks_main outputs, comma separated")


# Flags only one command takes: given to another command, the error names the command that reads it.
COMMAND_FLAGS = {
    "train": ("--no_progress",),
    "infer": ("--prompt", "--prompts_file", "--jsonl"),
    "plan": ("--num_devices", "--device_kind", "--headroom", "--matmul_efficiency", "--attention_efficiency",
             "--flag_min_mib", "--no_eval", "--generate", "--generate_batch", "--generate_prompt_length",
             "--generate_new_tokens", "--compile_for", "--json", "--hlo_out"),
}


def parse_command_line(parser: argparse.ArgumentParser, argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """(args, gin bindings): `--gin.X` bindings first, then `--gin_bindings` in the order given. A flag this command
    does not take is one error line naming it (and the command that takes it), not argparse's usage screen."""
    rest, bindings = split_argv(argv)
    args, unknown = parser.parse_known_args(rest)
    if unknown:
        problems = []
        flags = [u for u in unknown if u.startswith("-")] or unknown  # a value after an unknown flag is its value
        for flag in flags:
            name = flag.split("=", 1)[0]
            owners = [c for c, flags in COMMAND_FLAGS.items() if name in flags]
            if owners:
                problems.append(f"{name} is a flag of `python -m optiml_jax.{owners[0]}`, not of `{parser.prog}`")
            elif name.startswith("-"):
                problems.append(f"{name} is not a flag of `{parser.prog}` (--help lists them)")
            else:
                problems.append(f"unexpected argument {flag!r}")
        raise GinConfigError("; ".join(problems))
    return args, bindings + list(args.gin_bindings)


def search_paths_of(args: argparse.Namespace) -> list[str]:
    return [p for group in args.gin_search_paths for p in group]


def apply_data_flags(args: argparse.Namespace) -> None:
    """--module_import, --tfds_data_dir, --seqio_additional_cache_dirs: what SeqIO must know before tasks resolve."""
    if args.tfds_data_dir or args.seqio_additional_cache_dirs:
        import seqio

        if args.tfds_data_dir:
            seqio.set_tfds_data_dir_override(args.tfds_data_dir)
        dirs = [d for group in args.seqio_additional_cache_dirs for d in group]
        if dirs:
            seqio.add_global_cache_dirs(dirs)
    for module in args.module_import:
        import_user_module(module, "--module_import")


def import_user_module(module: str, origin: str) -> None:
    """Imports a task-registration module; a failure names the flag or macro that asked for it."""
    try:
        lazy_imports.import_user_module(module)
    except ImportError as e:
        raise GinConfigError(f"{origin}={module}: cannot import it ({e})") from e


# ---------------------------------------------------------------- gin
_CONFIGURED: dict = {}


def register_configurables() -> None:
    """Make the training entry points known to gin (idempotent)."""
    if _CONFIGURED:
        return
    from optiml_jax.training import model_config, partitioning, run_config, synthetic_data, train_loop

    _CONFIGURED["train"] = gin.external_configurable(train_loop.train, "train")
    for config_class in (run_config.DataConfig, run_config.OptimizerConfig, run_config.CheckpointConfig,
                         run_config.EvaluationConfig, run_config.ExecutionConfig):  # train.data = @DataConfig() ...
        gin.external_configurable(config_class, config_class.__name__)
    gin.external_configurable(model_config.opt_config, "opt_config")
    gin.external_configurable(model_config.llama_config, "llama_config")
    gin.external_configurable(model_config.model_config_from_checkpoint, "model_config_from_checkpoint")
    gin.external_configurable(partitioning.make_partitioner, "make_partitioner")
    gin.external_configurable(partitioning.standard_rules, "standard_rules")
    gin.external_configurable(synthetic_data.synthetic_stream, "synthetic_stream")


def configured_train():
    """`train_loop.train` with the parsed gin bindings applied."""
    register_configurables()
    return _CONFIGURED["train"]


def unset_required() -> list[str]:
    """Every binding still set to `%gin.REQUIRED` (macros by name, other bindings as scope/selector.param)."""
    missing = []
    for scope, selector, bindings in gin_internals.parsed_bindings():
        for name, value in bindings.items():
            if gin_internals.is_required(value):
                if selector == "gin.macro":
                    missing.append(scope)
                else:
                    missing.append(f"{scope + '/' if scope else ''}{selector}.{name}")
    return sorted(missing)


def _resolve_gin_file(name: str, paths: list[str]) -> str:
    """An absolute path for a --gin_file given relative to the working directory or a search path.

    `gin/runs/x.gin` (the README's spelling, relative to the repository root) also resolves from any other
    working directory and from a wheel install: a search path ending in `gin` is tried with that leading
    `gin/` removed.
    """
    names = [name]
    if pathlib.PurePath(name).parts[:1] == ("gin",):
        names.append(str(pathlib.PurePath(*pathlib.PurePath(name).parts[1:])))
    for candidate in [pathlib.Path(name)] + [pathlib.Path(p) / n for p in paths for n in names]:
        if candidate.is_file():
            return str(candidate.absolute())
    raise GinConfigError(f"--gin_file={name}: no such file (looked in the working directory and {paths})")


# ---------------------------------------------------------------- macros nobody reads
# Macros our code reads itself (gin.query_parameter), not through a binding, per command.
MACROS_READ_BY_CODE = {
    "train": frozenset({"MIXTURE_OR_TASK_MODULE"}),
    "eval": frozenset({"MIXTURE_OR_TASK_MODULE", "EVAL_OUTPUT_DIR"}),
    "infer": frozenset({"MIXTURE_OR_TASK_MODULE"}),
    "tasks": frozenset({"MIXTURE_OR_TASK_MODULE"}),
    "plan": frozenset({"MIXTURE_OR_TASK_MODULE"}),
}
# Each command's own run file: a macro set for one command that only another's file defines is named with that
# command ("EVAL_OUTPUT_DIR is read by `python -m optiml_jax.eval`").
COMMAND_RUN_FILES = {"train": "runs/train.gin", "eval": "runs/eval.gin", "infer": "runs/infer.gin"}
# Macros renamed so that every command says the same thing the same way (one release of a clear error).
RENAMED_MACROS = {"USE_CACHED": "USE_CACHED_TASKS", "BENCHMARKS": "SUITES", "TOKENIZER_PATH": "TOKENIZER_DIR"}
# T5X macros this project does not implement: what to set instead.
UNSUPPORTED_T5X_MACROS = {
    "EVAL_STEPS": "set EvaluationConfig.eval_batches (eval-loss batches per split) and EVAL_PERIOD (steps between evals)",
    "RANDOM_SEED": "set SEED (init, dropout and data order all derive from it)",
}


def _macro_references(value, out: set[str]) -> None:
    """Names of the macros `%NAME` inside a bound value (nested lists, tuples, dicts, sets)."""
    if gin_internals.is_reference(value):
        name = gin_internals.macro_name(value)
        if name:
            out.add(name)
    elif isinstance(value, dict):
        for k, v in value.items():
            _macro_references(k, out)
            _macro_references(v, out)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for v in value:
            _macro_references(v, out)


def macro_usage() -> tuple[set[str], set[str]]:
    """(macros defined, macros some binding refers to) in the parsed configuration. A macro's own value counts as
    a binding, so `A = %B` reads B (and A is read only if something refers to A)."""
    defined, referenced = set(), set()
    for scope, selector, bindings in gin_internals.parsed_bindings():
        if selector == "gin.macro":
            defined.add(scope)
        for value in bindings.values():
            _macro_references(value, referenced)
    return defined, referenced


def binding_names(bindings: Sequence[str]) -> set[str]:
    names = set()
    for b in bindings:
        for line in str(b).splitlines():
            m = re.match(r"^\s*([A-Za-z_][\w./]*)\s*=", line)
            if m:
                names.add(m.group(1))
    return names


def _macros_of_run_file(rel: str) -> set[str]:
    for d in gin_search_paths():
        path = pathlib.Path(d) / rel
        if path.is_file():
            return set(re.findall(r"^([A-Z][A-Z0-9_]*)\s*=", path.read_text(), re.M))
    return set()


def _read_elsewhere(name: str, command: str | None) -> str | None:
    """`python -m optiml_jax.<other>` when another command's run file defines the macro; else None."""
    for other, rel in COMMAND_RUN_FILES.items():
        if other != command and name in _macros_of_run_file(rel):
            return f"python -m optiml_jax.{other} (gin/{rel})"
    return None


def check_macros_are_read(bindings: Sequence[str] = (), read_by_code: Sequence[str] = (),
                          command: str | None = None) -> None:
    """A macro that no binding reads is a typo (`--gin.LEARNIG_RATE=0.1` would otherwise train at the default) or
    a T5X macro we do not implement: one error listing each, with the closest read macros as suggestions.
    Checked over the final parsed configuration, so a gin file may define macros that only some configurations
    read, as long as the configuration run reads them."""
    import difflib

    defined, referenced = macro_usage()
    by_code = MACROS_READ_BY_CODE.get(command, frozenset().union(*MACROS_READ_BY_CODE.values()))
    read = referenced | by_code | set(read_by_code)
    unread = sorted(defined - read)
    if not unread:
        return
    on_command_line = binding_names(bindings)
    problems = []
    for name in unread:
        where = "on the command line" if name in on_command_line else "in a gin file"
        if name in UNSUPPORTED_T5X_MACROS:
            problems.append(f"{name} (set {where}) is a T5X macro this project does not implement: "
                            f"{UNSUPPORTED_T5X_MACROS[name]}")
            continue
        if name in RENAMED_MACROS:
            problems.append(f"{name} (set {where}) was renamed {RENAMED_MACROS[name]} (the same name in every "
                            f"command, T5X's): set {RENAMED_MACROS[name]} instead")
            continue
        elsewhere = _read_elsewhere(name, command)
        if elsewhere and name in on_command_line:
            problems.append(f"macro {name} (set {where}) is not read by `python -m optiml_jax.{command}`; it is "
                            f"read by `{elsewhere}`")
            continue
        close = difflib.get_close_matches(name, sorted(read - {name}), n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(close)}?" if close else "; no binding refers to it (typo?)"
        problems.append(f"macro {name} (set {where}) is read by no binding{hint}")
    raise GinConfigError("; ".join(problems))


def _macro_value(name: str):
    try:
        return gin.query_parameter(f"{name}/macro.value")
    except (ValueError, KeyError):
        return None


def import_task_modules() -> None:
    """T5X's `MIXTURE_OR_TASK_MODULE` (one module name or a list): imported before anything resolves a task."""
    modules = _macro_value("MIXTURE_OR_TASK_MODULE")
    if modules is None:
        return
    for module in [modules] if isinstance(modules, str) else list(modules):
        import_user_module(module, "MIXTURE_OR_TASK_MODULE")


def _malformed_binding(bindings: Sequence[str]) -> str | None:
    """The first binding that gin cannot even parse on its own (an unclosed bracket, a stray quote), named: gin's
    own error (`TokenError: EOF in multi-line statement`) says neither which binding nor which macro."""
    from gin import config_parser

    for b in bindings:
        try:
            parser = config_parser.ConfigParser(b, config_parser_delegate())
            for _ in parser:
                pass
        except Exception as e:  # noqa: BLE001
            name = b.split("=", 1)[0].strip()
            return f"the binding of {name} is not valid gin ({type(e).__name__}: {e}): {b!r}"
    return None


def config_parser_delegate():
    """A parser delegate that accepts any reference: only the syntax of a binding is checked."""
    from gin import config_parser

    class _Delegate(config_parser.ParserDelegate):
        def configurable_reference(self, scoped_name, evaluate):
            return scoped_name

        def macro(self, scoped_name):
            return scoped_name

    return _Delegate()


def parse_gin(gin_files: Sequence[str], bindings: Sequence[str] = (), search_paths: Sequence[str] = (),
              check_required: bool = True, finalize: bool = True, check_macros: bool = True,
              command: str | None = None) -> None:
    """Parse files and bindings (on a clean config), import MIXTURE_OR_TASK_MODULE, then fail with one
    message on any unset REQUIRED and (`check_macros`) on any macro no binding reads (`check_macros_are_read`).
    All of it happens before any device work."""
    gin.clear_config()  # also unlocks a config an earlier command in this process finalized (a notebook's)
    register_configurables()
    paths = [str(pathlib.Path(p).absolute()) for p in search_paths] + [str(p) for p in gin_search_paths()]
    gin_internals.prepend_search_paths(paths)
    files = [_resolve_gin_file(str(f), paths) for f in gin_files]
    try:
        gin.parse_config_files_and_bindings(files, list(bindings), finalize_config=False, skip_unknown=False)
    except Exception as e:  # noqa: BLE001 (gin raises ValueError, SyntaxError, tokenize.TokenError, ...)
        culprit = _malformed_binding(bindings)
        moved = moved_binding_message(str(e))
        if moved is not None:  # gin's text after it still names the file and line
            culprit = f"{moved} (gin: {e})"
        if culprit is not None:
            raise GinConfigError(culprit) from e
        raise GinConfigError(f"gin configuration error: {type(e).__name__}: {e}") from e
    import_task_modules()
    if check_required:
        missing = unset_required()
        if missing:
            raise GinConfigError(
                "required gin settings are unset: " + ", ".join(missing)
                + ". Set them with --gin.NAME=VALUE or in a --gin_file.")
    if check_macros:
        check_macros_are_read(bindings, command=command)
    if not finalize:  # the tasks CLI: its subcommands import (gin-configurable) modules lazily
        return
    try:
        gin.finalize()
    except (ValueError, KeyError, TypeError) as e:
        raise GinConfigError(f"gin configuration error: {e}") from e


def setup(args: argparse.Namespace, bindings: Sequence[str], default_files: Sequence[str] = (),
          check_required: bool = True, finalize: bool = True, check_macros: bool = True,
          command: str | None = None) -> None:
    """Everything a command does before its own work: data flags, module imports, gin files and bindings."""
    apply_data_flags(args)
    parse_gin(args.gin_file or list(default_files), bindings, search_paths_of(args), check_required,
              finalize=finalize, check_macros=check_macros, command=command)


_MODEL_BINDING = re.compile(r"^\s*train\.model_config\s*=", re.M)
_INCLUDE = re.compile(r"""^\s*include\s+['"]([^'"]+)['"]""", re.M)


def model_config_origin(args: argparse.Namespace, bindings: Sequence[str]) -> str:
    """Where the run's `train.model_config` comes from, for messages: the last gin file (includes followed in parse
    order) or command-line binding that sets it, e.g. 'train.model_config (models/llama_tiny.gin)'."""
    paths = [str(pathlib.Path(p).absolute()) for p in search_paths_of(args)] + [str(p) for p in gin_search_paths()]
    found = None

    def walk(path: pathlib.Path, depth: int = 0) -> None:
        nonlocal found
        try:
            text = path.read_text()
        except OSError:
            return
        events = sorted([(m.start(), "set", None) for m in _MODEL_BINDING.finditer(text)]
                        + [(m.start(), "include", m.group(1)) for m in _INCLUDE.finditer(text)])
        for _, kind, name in events:
            if kind == "set":
                found = path
            elif depth < 20:
                for base in [path.parent, pathlib.Path.cwd(), *map(pathlib.Path, paths)]:
                    if (base / name).is_file():
                        walk(base / name, depth + 1)
                        break

    for f in args.gin_file:
        try:
            walk(pathlib.Path(_resolve_gin_file(str(f), paths)))
        except GinConfigError:
            continue
    if "train.model_config" in binding_names(bindings):
        return "train.model_config (command line)"
    if found is None:
        return "train.model_config"
    shown = next((str(found.relative_to(p)) for p in paths if found.is_relative_to(p)), str(found))
    return f"train.model_config ({shown})"


def write_configs(model_dir: str | pathlib.Path) -> None:
    """`config.gin` (everything parsed) and `operative_config.gin` (what was actually used so far)."""
    model_dir = user_path(model_dir, "MODEL_DIR")
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "config.gin").write_text(gin.config_str())
    (model_dir / "operative_config.gin").write_text(gin.operative_config_str())


def check_training_data() -> None:
    """Before any device work: the run's MIXTURE_OR_TASK_NAME resolves to what `DataConfig.stream_factory` will read.
    With the one data stream (`get_train_stream`) that is `optiml_jax.data.mixture_names.ensure_registered` (which
    registers an OPT-IML Bench mixture from its data macros on demand); the smoke stream checks its own name."""
    try:
        factory = gin.query_parameter("DataConfig.stream_factory")
    except (ValueError, KeyError):
        return  # train() itself says that no data source is bound
    if getattr(factory, "selector", "").rsplit(".", 1)[-1] != "get_train_stream":
        return
    from optiml_jax.data.mixture_names import ensure_registered, run_tokenizer

    tokenizer = run_tokenizer(_bound("get_train_stream.tokenizer_dir"),
                              _bound("get_train_stream.initial_checkpoint_path"))
    ensure_registered(_macro_value("MIXTURE_OR_TASK_NAME"), tokenizer=tokenizer, match_tokenizer=True)


def _bound(binding: str):
    """A binding's value with macros resolved (None when unbound)."""
    scope, _, param = binding.rpartition(".")
    try:
        return gin.get_bindings(scope, resolve_references=True).get(param)
    except (ValueError, KeyError):
        return None
