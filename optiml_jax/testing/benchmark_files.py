"""Renamed `optiml_jax.testing.source_files` (one release of a clear error): "benchmark" named five things; these
writers write source files in each collection's public format."""

raise ImportError("optiml_jax.testing.benchmark_files was renamed optiml_jax.testing.source_files "
                  "(and its BENCH_GIN is OPT_IML_BENCH_GIN): from optiml_jax.testing.source_files import ...")
