"""Registering mixtures as real `seqio.Mixture`s: by the paper's recipe, or with explicit rates.

A recipe mixture remembers its task list; its rates are computed by `optiml_jax.tasks.recipe.compute_rates`
from the registered example counts and the gin-configured `MixtureRecipe`. `resolve_rates(name)` recomputes
them with the recipe in force now (so `--gin_file gin/mixtures/eps_128.gin` takes effect even though the
mixture was registered at import time) and re-registers the seqio mixture when they changed, so the seqio
mixture's rates and the training stream's sampling probabilities are always the same numbers.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import seqio

from optiml_jax.tasks.recipe import MixtureRates, MixtureRecipe, compute_rates
from optiml_jax.tasks import registry

_RECIPE_MIXTURES: dict[str, tuple[str, ...]] = {}
_LAST_RATES: dict[str, MixtureRates] = {}


def _add_seqio_mixture(name: str, rates: Mapping[str, float]) -> seqio.Mixture:
    if name in seqio.MixtureRegistry.names():
        seqio.MixtureRegistry.remove(name)
    return seqio.MixtureRegistry.add(name, [(t, float(r)) for t, r in rates.items()])


def register_recipe_mixture(name: str, task_names: Sequence[str], recipe: MixtureRecipe | None = None) -> MixtureRates:
    """Registers `name` over `task_names` with recipe rates (default: the gin-configured `MixtureRecipe()`)."""
    for t in task_names:
        registry.get_task(t)
    _RECIPE_MIXTURES[name] = tuple(task_names)
    return _refresh(name, recipe)


def register_rate_mixture(name: str, rates: Mapping[str, float]) -> seqio.Mixture:
    """Registers a mixture with explicit (unnormalized) rates over registered tasks or mixtures."""
    if not rates or any(r < 0 for r in rates.values()):
        raise ValueError(f"mixture {name!r}: rates must be a non-empty mapping of non-negative numbers")
    _RECIPE_MIXTURES.pop(name, None)
    return _add_seqio_mixture(name, rates)


def _refresh(name: str, recipe: MixtureRecipe | None) -> MixtureRates:
    tasks = [registry.get_task(t).info for t in _RECIPE_MIXTURES[name]]
    counts = {t.name: registry.num_examples(t.name, "train") for t in tasks}
    rates = compute_rates(tasks, counts, recipe or MixtureRecipe())
    if _LAST_RATES.get(name) != rates or name not in seqio.MixtureRegistry.names():
        _add_seqio_mixture(name, rates.task_rates)
        _LAST_RATES[name] = rates
    return rates


def recipe_rates(name: str, recipe: MixtureRecipe | None = None) -> MixtureRates | None:
    """The recipe report of a recipe mixture (recomputed now), or None for other mixtures/tasks."""
    return _refresh(name, recipe) if name in _RECIPE_MIXTURES else None


def resolve_rates(name: str, recipe: MixtureRecipe | None = None) -> dict[str, float]:
    """{task: probability} of a task or mixture (nested mixtures flattened), normalized to sum to 1."""
    if name in _RECIPE_MIXTURES:
        _refresh(name, recipe)
    provider = seqio.get_mixture_or_task(name)
    if isinstance(provider, seqio.Task):
        registry.get_task(name)
        return {name: 1.0}
    flat: dict[str, float] = {}
    total = sum(provider.get_rate(t) for t in provider.tasks)
    if total <= 0:
        raise ValueError(f"mixture {name!r} has zero total rate")
    for t in provider.tasks:
        registry.get_task(t.name)
        flat[t.name] = flat.get(t.name, 0.0) + provider.get_rate(t) / total
    return flat
