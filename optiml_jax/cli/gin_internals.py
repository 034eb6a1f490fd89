"""The only code that reads gin's private state.

gin-config 0.5 has no public way to list the parsed bindings, to tell a `%gin.REQUIRED` left unset from a value,
or to put a search path before its default '' prefix. The CLIs need all three (unset-required errors, macros
nobody reads, `include 'models/x.gin'` from our gin folder), so they live here, each behind a check that names
what is missing: a gin release that changes them fails here with one line, and `tests/cli/test_gin_internals.py`
fails in CI before any user sees it.
"""

from __future__ import annotations

from typing import Any, Iterator

__all__ = ["GinInternalsChanged", "is_reference", "is_required", "macro_name", "parsed_bindings",
           "prepend_search_paths"]


class GinInternalsChanged(RuntimeError):
    """This gin release lacks an internal that optiml_jax/cli/gin_internals.py relies on."""


def _internal(name: str) -> Any:
    from gin import config as gin_config

    try:
        return getattr(gin_config, name)
    except AttributeError:
        from importlib.metadata import version

        raise GinInternalsChanged(f"gin-config {version('gin-config')} has no gin.config.{name}: "
                                  "optiml_jax/cli/gin_internals.py needs updating for it") from None


def parsed_bindings() -> Iterator[tuple[str, str, dict]]:
    """(scope, selector, {parameter: value}) for every binding parsed so far; a macro `M = v` is
    (`'M'`, `'gin.macro'`, {'value': v})."""
    for (scope, selector), bindings in list(_internal("_CONFIG").items()):
        yield scope, selector, dict(bindings)


def is_reference(value: Any) -> bool:
    """Whether a bound value is a reference (`@fn`, `@fn()` or `%MACRO`), not a literal."""
    return isinstance(value, _internal("ConfigurableReference"))


def macro_name(value: Any) -> str | None:
    """`NAME` when the bound value is `%NAME`, else None."""
    if is_reference(value) and value.selector == "gin.macro":
        return value.scoped_selector.rsplit("/", 1)[0]
    return None


def is_required(value: Any) -> bool:
    """Whether a bound value is `%gin.REQUIRED` (still unset)."""
    import gin

    return (is_reference(value) and value.configurable.wrapped == _internal("_retrieve_constant")
            and value.scoped_configurable_fn() is gin.REQUIRED)


def prepend_search_paths(paths: list[str]) -> None:
    """Put `paths` first among gin's include search paths (gin only offers appending)."""
    prefixes = _internal("_LOCATION_PREFIXES")
    for p in reversed(paths):
        if p in prefixes:
            prefixes.remove(p)
        prefixes.insert(0, p)
