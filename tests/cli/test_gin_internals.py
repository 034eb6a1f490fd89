"""optiml_jax/cli/gin_internals.py against the installed gin: the private state it reads is what the CLIs' checks
(unset %gin.REQUIRED, macros nobody reads, our include search path) stand on. A gin release that changes it fails
here, and the wrapper's own error names what is gone."""

import gin
import pytest

from optiml_jax.cli import gin_internals, gin_setup


@gin.configurable
def configurable_for_test(x=None, y=None):
    return x, y


@pytest.fixture
def parsed():
    gin.clear_config()
    gin.parse_config("""
        A = 3
        B = %gin.REQUIRED
        C = %A
        configurable_for_test.x = %C
        configurable_for_test.y = [%B, {'k': %A}]
    """)
    yield
    gin.clear_config()


def test_parsed_bindings_lists_macros_and_parameters(parsed):
    seen = {(scope, selector): bindings for scope, selector, bindings in gin_internals.parsed_bindings()}
    assert seen[("A", "gin.macro")] == {"value": 3}
    assert gin_internals.macro_name(seen[("C", "gin.macro")]["value"]) == "A"
    (params,) = [b for (scope, selector), b in seen.items() if selector.endswith("configurable_for_test")]
    assert set(params) == {"x", "y"} and gin_internals.macro_name(params["x"]) == "C"


def test_required_and_references(parsed):
    seen = {(scope, selector): bindings for scope, selector, bindings in gin_internals.parsed_bindings()}
    assert gin_internals.is_required(seen[("B", "gin.macro")]["value"])
    assert not gin_internals.is_required(seen[("C", "gin.macro")]["value"])
    assert gin_internals.is_reference(seen[("C", "gin.macro")]["value"]) and not gin_internals.is_reference(3)
    assert gin_setup.unset_required() == ["B"]
    defined, referenced = gin_setup.macro_usage()
    assert defined == {"A", "B", "C"} and referenced == {"A", "B", "C"}


def test_prepend_search_paths_makes_includes_resolve_there(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "inner.gin").write_text("D = 7\n")
    gin.clear_config()
    try:
        gin_internals.prepend_search_paths([str(tmp_path)])
        gin.parse_config("include 'sub/inner.gin'")
        assert gin.query_parameter("D/macro.value") == 7
    finally:
        gin.clear_config()


def test_a_gin_without_the_internal_is_one_clear_error(monkeypatch):
    from gin import config as gin_config

    monkeypatch.delattr(gin_config, "_CONFIG")
    with pytest.raises(gin_internals.GinInternalsChanged, match=r"gin-config .* has no gin.config._CONFIG"):
        list(gin_internals.parsed_bindings())
