"""Mixing rates of any `seqio.Mixture`, and mixtures registered by the paper's recipe.

`resolve_rates(name)` reads rates the way seqio defines them, for any task or mixture in seqio's registries:
nested mixtures, `default_rate` functions and explicit rates (`Mixture.get_rate`, flattened over `tasks`),
normalized to sum to 1. Those are the training stream's sampling probabilities.

A recipe mixture (`register_recipe_mixture`) remembers its task list; its rates are computed by
`optiml_jax.tasks.recipe.compute_rates` from the registered example counts and the gin-configured
`MixtureRecipe`, recomputed with the recipe in force when it is read (so `--gin_file gin/mixtures/eps_128.gin`
takes effect even though the mixture was registered at import time), and the seqio mixture is re-registered
with them. Only mixtures this module registered are ever recomputed: a mixture a user registers or edits
(also one that replaces a recipe mixture of the same name) is read as it is, never overwritten.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import seqio

from optiml_jax.tasks import registry
from optiml_jax.tasks.recipe import MixtureRates, MixtureRecipe, compute_rates

_RECIPE_MIXTURES: dict[str, tuple[str, ...]] = {}
_OWNED: dict[str, seqio.Mixture] = {}  # the seqio.Mixture object we last registered under each recipe name
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
    _OWNED.pop(name, None)
    return _refresh(name, recipe)


def register_rate_mixture(name: str, rates: Mapping[str, float]) -> seqio.Mixture:
    """Registers a mixture with explicit (unnormalized) rates over registered tasks or mixtures."""
    if not rates or any(r < 0 for r in rates.values()):
        raise ValueError(f"mixture {name!r}: rates must be a non-empty mapping of non-negative numbers")
    _forget(name)
    return _add_seqio_mixture(name, rates)


def _forget(name: str) -> None:
    _RECIPE_MIXTURES.pop(name, None)
    _OWNED.pop(name, None)
    _LAST_RATES.pop(name, None)


def is_recipe_mixture(name: str) -> bool:
    """True while `name` is the recipe mixture we registered (False once a user re-registered or removed it)."""
    if name not in _RECIPE_MIXTURES:
        return False
    if name in _OWNED and (name not in seqio.MixtureRegistry.names()
                           or seqio.MixtureRegistry.get(name) is not _OWNED[name]):
        _forget(name)  # the user's mixture now: read it as it is from here on
        return False
    return True


def _refresh(name: str, recipe: MixtureRecipe | None) -> MixtureRates:
    tasks = [registry.get_task(t).info for t in _RECIPE_MIXTURES[name]]
    counts = {t.name: registry.num_examples(t.name, "train") for t in tasks}
    rates = compute_rates(tasks, counts, recipe or MixtureRecipe())
    if _LAST_RATES.get(name) != rates or name not in _OWNED:
        _OWNED[name] = _add_seqio_mixture(name, rates.task_rates)
        _LAST_RATES[name] = rates
    return rates


def recipe_rates(name: str, recipe: MixtureRecipe | None = None) -> MixtureRates | None:
    """The recipe report of a recipe mixture (recomputed now), or None for other mixtures and tasks."""
    return _refresh(name, recipe) if is_recipe_mixture(name) else None


def resolve_rates(name: str, recipe: MixtureRecipe | None = None) -> dict[str, float]:
    """{task: probability} of a task or mixture (nested mixtures flattened), normalized to sum to 1."""
    if is_recipe_mixture(name):
        _refresh(name, recipe)
    if name in seqio.TaskRegistry.names():
        registry.get_task(name)
        return {name: 1.0}
    if name not in seqio.MixtureRegistry.names():
        raise registry.unknown_name_error(name)
    provider = seqio.MixtureRegistry.get(name)
    rates = {t.name: float(provider.get_rate(t)) for t in provider.tasks}
    total = sum(rates.values())
    if total <= 0:
        raise ValueError(f"mixture {name!r} has zero total rate")
    for t in rates:
        registry.get_task(t)
    return {t: r / total for t, r in rates.items()}
