"""Tasks: metadata, the mini-benchmark generator, registration helpers and the `python -m optiml_jax.tasks` CLI.

Registrations themselves live in the top-level `tasks/` folder (package `optiml_jax.tasks.registrations`).
Kept import-light: import `optiml_jax.tasks.registry` / `.mixtures` (SeqIO) explicitly.
"""
