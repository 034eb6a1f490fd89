"""`python -m optiml_jax.tasks <subcommand>`: the task registry's command. It lists, inspects, reports on,
leakage-checks and caches the tasks and mixtures the registry resolves (the library's: the mini-benchmark, and
OPT-IML Bench from local data with gin/bench/opt_iml_bench.gin; yours with --module_import); `list` also compares
OPT-IML Bench's catalog with the paper's Table 1.

One module per subcommand: to add one, write `optiml_jax/cli/tasks/<name>_command.py` with `HELP`,
`add_arguments(parser)` and `run(args) -> int`, and add it to `SUBCOMMANDS` and `build_parser`'s imports. Every subcommand takes the
flags of `optiml_jax.cli.gin_setup` (`--gin_file`, `--gin.X=V`, `--module_import`, ...).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # DEFAULT_MODULES is imported by name (--module_import): visible to the layer contract
    import optiml_jax.tasks.registrations

SUBCOMMANDS = ("list", "inspect", "report", "leakage", "cache")
DEFAULT_MODULES = ("optiml_jax.tasks.registrations",)


def main(argv: list[str] | None = None) -> int:
    """In-process: a user error is raised as `CommandError` (a SystemExit with code 2, message printed);
    `console_main` turns every outcome into the documented exit code (optiml_jax/cli/errors.py)."""
    from optiml_jax.cli import errors, gin_setup
    from optiml_jax.cli.console import setup_console

    setup_console(logging.WARNING)
    parser, modules = build_parser()
    try:
        args, bindings = gin_setup.parse_command_line(parser, list(sys.argv[1:] if argv is None else argv))
        args.argv = list(sys.argv[1:] if argv is None else argv)  # `cache --workers` reruns it per worker
        setup(args, bindings)
        args.gin_bindings = bindings  # what the command line bound (run_settings names it in a conflict)
    except gin_setup.GinConfigError as e:
        raise errors.fail(str(e)) from e
    return modules[args.command].run(args)


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    """The parser of every subcommand, and the subcommand modules by name."""
    from optiml_jax.cli import errors, gin_setup

    parser = errors.with_exit_codes(argparse.ArgumentParser(prog="python -m optiml_jax.tasks", description=__doc__))
    sub = parser.add_subparsers(dest="command", required=True)
    from optiml_jax.cli.tasks import cache_command, inspect_command, leakage_command, list_command, report_command

    commands = {"list": list_command, "inspect": inspect_command, "report": report_command,
                "leakage": leakage_command, "cache": cache_command}
    modules = {}
    for name in SUBCOMMANDS:
        modules[name] = commands[name]
        p = sub.add_parser(name, help=modules[name].HELP, description=modules[name].HELP)
        errors.with_exit_codes(p)
        gin_setup.add_gin_arguments(p)
        errors.add_verbose_argument(p)
        modules[name].add_arguments(p)
    return parser, modules


def setup(args: argparse.Namespace, bindings: list[str]) -> None:
    """Imports the registration modules (the library's own unless --module_import names others), parses gin,
    then runs the gin-configured registrations (`run_registrations`, e.g. OPT-IML Bench from local
    data, which needs the data-directory macros the command line sets)."""
    import gin

    from optiml_jax.cli import errors, gin_setup

    # a command run earlier in this process (a notebook's train, then tasks) left gin finalized and locked:
    # these first imports register configurables, which a locked config refuses
    with gin.unlock_config():
        import optiml_jax.data  # noqa: F401  (registers the configurables)
        from optiml_jax.sources.raw_examples import SourceDataError
        from optiml_jax.tasks.gin_registrations import run_registrations
        from optiml_jax.vocabularies.tokenizer_files import OPTVocabularyError

    if not args.module_import:
        args.module_import = list(DEFAULT_MODULES)
    gin_setup.setup(args, bindings, check_required=False, finalize=False)
    try:
        run_registrations()
    except (SourceDataError, OPTVocabularyError, FileNotFoundError) as e:
        raise errors.fail(str(e)) from e


def console_main(argv: list[str] | None = None) -> None:
    """Console-script entry (setup.py) and `python -m optiml_jax.tasks`: exits with the documented code."""
    from optiml_jax.cli.errors import run_command

    sys.exit(run_command(lambda: main(argv), argv))
