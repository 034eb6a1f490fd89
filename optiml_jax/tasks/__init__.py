"""The task layer: the registry (what resolves a task or mixture name), task metadata, mixtures and the paper's
recipe, formatting, OPT-IML Bench (`catalog/`: its task list and splits; `opt_iml_bench.py`: its registration from
local data), the embedded mini-benchmark (`mini_bench/`), leakage checks, and the front door of the
`python -m optiml_jax.tasks` command (`optiml_jax.cli.tasks`).

The library's registrations are `optiml_jax.tasks.registrations`; users' own go in a module of theirs (the
top-level `tasks/` folder has an example). Kept import-light: import `optiml_jax.tasks.registry` / `.mixtures`
(SeqIO) explicitly.
"""
