"""Fixtures: the mini-benchmark registrations and a small mixture of a few quick-to-tokenize tasks."""

import pytest


@pytest.fixture(scope="session")
def mini_bench():
    import optiml_jax.tasks.mini_bench.registration as mb

    return mb


@pytest.fixture(scope="session")
def small_mixture(mini_bench):
    from optiml_jax.tasks import mixtures

    rates = {"mini_bench_niv2_multiply": 2.0, "mini_bench_flan_sentiment": 1.0, "mini_bench_unifiedskg_table_qa": 1.0,
             "mini_bench_reasoning_multiply": 1.0}
    mixtures.register_rate_mixture("test_small_mixture", rates)
    return "test_small_mixture"
