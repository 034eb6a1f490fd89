"""The library's default task and mixture registrations: `import optiml_jax.tasks.registrations` registers the
embedded mini-benchmark (its tasks, `mini_bench_train` and the per-level evaluation mixtures).

The real OPT-IML Bench registers from local data through gin (`gin/bench/opt_iml_bench.gin`,
`optiml_jax.tasks.opt_iml_bench`); your own tasks go in a module of yours, imported with T5X's
`--gin.MIXTURE_OR_TASK_MODULE=my_tasks` or `--module_import=my_tasks` (see tasks/README.md).
"""

from optiml_jax.tasks.mini_bench import registration as mini_bench  # noqa: F401
