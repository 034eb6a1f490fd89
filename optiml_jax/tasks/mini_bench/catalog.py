"""Renamed `optiml_jax.tasks.mini_bench.task_list` (one release of a clear error): "catalog" is OPT-IML Bench's
task list only (`optiml_jax.tasks.catalog`); the mini-benchmark's is its task list."""

raise ImportError("optiml_jax.tasks.mini_bench.catalog was renamed optiml_jax.tasks.mini_bench.task_list "
                  "(\"catalog\" names OPT-IML Bench's task list only): from optiml_jax.tasks.mini_bench import TASKS")
