"""Names renamed for one word per concept (issue 25) fail for one release with an error naming the new name,
and the new names are what the old ones were."""

import importlib

import pytest

from optiml_jax.lazy_imports import renamed_attributes

RENAMED = [
    ("optiml_jax.sources.raw_examples", "BenchDataError", "SourceDataError"),
    ("optiml_jax.data.mixture_names", "is_bench_mixture_name", "is_opt_iml_bench_mixture_name"),
    ("optiml_jax.data.mixture_names", "register_configured_bench", "register_configured_opt_iml_bench"),
    ("optiml_jax.data.mixture_names", "BENCH_SOURCE_MACROS", "OPT_IML_BENCH_SOURCE_MACROS"),
    ("optiml_jax.tasks.opt_iml_bench", "register_bench_mixtures", "register_split_mixtures"),
]


@pytest.mark.parametrize("module, old, new", RENAMED)
def test_an_old_name_says_its_new_name_and_the_new_one_exists(module, old, new):
    mod = importlib.import_module(module)
    with pytest.raises(ImportError, match=rf"{module}\.{old} was renamed {new}\b.*from {module} import {new}"):
        exec(f"from {module} import {old}", {})
    assert getattr(mod, new) is not None


@pytest.mark.parametrize("old, new", [("optiml_jax.testing.benchmark_files", "optiml_jax.testing.source_files"),
                                      ("optiml_jax.tasks.mini_bench.catalog", "optiml_jax.tasks.mini_bench.task_list")])
def test_a_renamed_module_says_its_new_name(old, new):
    with pytest.raises(ImportError, match=rf"{old} was renamed {new}"):
        importlib.import_module(old)
    importlib.import_module(new)


def test_a_name_never_defined_is_still_an_attribute_error():
    getattr_ = renamed_attributes("pkg.mod", {"Old": "New"})
    with pytest.raises(AttributeError, match="'pkg.mod' has no attribute 'Other'"):
        getattr_("Other")
    with pytest.raises(ImportError, match="pkg.mod.Old was renamed New"):
        getattr_("Old")
