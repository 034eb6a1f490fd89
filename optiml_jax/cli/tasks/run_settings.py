"""The run a `tasks` subcommand describes: `tasks report NAME --gin_file=gin/runs/quickstart.gin` packs rows of the
run's `TASK_FEATURE_LENGTHS`, batches of its `BATCH_SIZE` and its stream's `SEED` (T5X's macros, the ones train
reads), not the flags' defaults. A flag given beside a configuration that sets the macro must agree with it:
two different values for one setting are an error naming both, never one silently winning. The task or mixture
name may be left out when the configuration sets `MIXTURE_OR_TASK_NAME`."""

from __future__ import annotations

import argparse
from typing import Sequence

# flag attribute -> (macro, default when neither the flag nor the configuration sets it)
SETTINGS = {"length": ("TASK_FEATURE_LENGTHS", 2048), "batch_size": ("BATCH_SIZE", 8), "seed": ("SEED", 0)}


def _bound(macro: str):
    """The macro's value when the parsed configuration sets it to a literal (not %gin.REQUIRED), else None."""
    import gin

    try:
        value = gin.query_parameter(f"{macro}/macro.value")
    except (ValueError, KeyError):
        return None
    from optiml_jax.cli import gin_internals

    return None if gin_internals.is_reference(value) else value


def _origin(macro: str, bindings: Sequence[str], gin_files: Sequence[str]) -> str:
    if any(str(b).split("=", 1)[0].strip() == macro for b in bindings):
        return f"--gin.{macro}"
    return " ".join(f"--gin_file={f}" for f in gin_files) or "the gin configuration"


def resolve(args: argparse.Namespace, bindings: Sequence[str], names: Sequence[str]) -> None:
    """Sets each of `names` on `args` (`length` becomes the macro's mapping when it comes from
    TASK_FEATURE_LENGTHS) and `args.name` from MIXTURE_OR_TASK_NAME when not given; raises a usage error (exit
    2) when a flag and the configuration disagree."""
    from optiml_jax.cli import errors
    from optiml_jax.data.stream import sequence_length

    for attr in names:
        macro, default = SETTINGS[attr]
        flag, bound = getattr(args, attr), _bound(macro)
        if bound is None:
            setattr(args, attr, default if flag is None else flag)
            continue
        configured = sequence_length(bound) if attr == "length" else bound
        if flag is not None and flag != configured:
            shown = f"{bound!r}" + (f" (rows of {configured})" if attr == "length" else "")
            raise errors.fail(f"--{attr}={flag} disagrees with {macro} = {shown} set by "
                              f"{_origin(macro, bindings, args.gin_file or ())}; drop the flag or make them agree")
        setattr(args, attr, bound)
    if getattr(args, "name", "") is None:
        name = _bound("MIXTURE_OR_TASK_NAME")
        if name is None:
            raise errors.fail("name a task or mixture, or give a --gin_file that sets MIXTURE_OR_TASK_NAME")
        args.name = name


def require_registered(name: str) -> None:
    """An unknown task or mixture name is a usage error (exit 2) naming the closest registered names."""
    from optiml_jax.cli import errors
    from optiml_jax.tasks import registry

    if name not in registry.known_names():
        raise errors.fail(registry.unknown_name_error(name).args[0])
