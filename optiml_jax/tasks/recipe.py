"""Mixing rates of the paper's recipe (sections 2.1, 4.2-4.7), from example counts alone.

For task t of collection c with n_t train examples (from a counts file, never by reading data):
  1. hard cap per task: n_t <- min(n_t, cap_c) with cap 100k, FLAN 30k (paper 2.1);
  2. examples-proportional with cap EPS: r_t = min(n_t, EPS) (paper 4.2);
  3. inside a collection, tasks share the collection's mass in proportion to r_t;
  4. collections: pre-training text gets `pretraining_share` and dialogue `dialogue_share` of the whole
     (full-sequence loss); the rest is split among the seven collections by `proportions`
     (CrossFit/ExMix/FLAN/NIv2/PromptSource/T5/UnifiedSKG = 4/2/20/25/45/2/2 by default); reasoning gets
     `reasoning_share` of the whole, taken out of `reasoning_taken_from`'s share (NIv2, as in the paper's
     reasoning ablation) or, when that is None, out of all collections proportionally. The paper does not say
     how the final 1% and 5% were renormalized: this is our documented reading.
  5. a collection with a positive share but no task is "missing": its share is dropped and the rest is
     renormalized to sum to 1; `MixtureRates.missing` reports it.
Effective task rate = collection share * r_t / sum of r in the collection. These rates are registered as
the `seqio.Mixture`'s rates and are the training stream's sampling probabilities.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import gin

from optiml_jax.tasks.metadata import TaskInfo

COLLECTIONS = ("crossfit", "exmix", "flan", "niv2", "promptsource", "t5", "unifiedskg")
PAPER_PROPORTIONS = {"crossfit": 4, "exmix": 2, "flan": 20, "niv2": 25, "promptsource": 45, "t5": 2, "unifiedskg": 2}


@gin.configurable
@dataclasses.dataclass(frozen=True)
class MixtureRecipe:
    eps: int = 4096
    default_task_cap: int = 100_000
    task_caps: Mapping[str, int] = dataclasses.field(default_factory=lambda: {"flan": 30_000})
    proportions: Mapping[str, float] = dataclasses.field(default_factory=lambda: dict(PAPER_PROPORTIONS))
    reasoning_share: float = 0.01
    reasoning_taken_from: str | None = "niv2"
    pretraining_share: float = 0.05
    dialogue_share: float = 0.0

    def __post_init__(self):
        unknown = set(self.proportions) - set(COLLECTIONS)
        if unknown:
            raise ValueError(f"MixtureRecipe.proportions: unknown collection(s) {sorted(unknown)}; use {COLLECTIONS}")
        if any(v < 0 for v in self.proportions.values()) or self.eps <= 0:
            raise ValueError("MixtureRecipe: proportions must be >= 0 and eps > 0")
        fixed = self.pretraining_share + self.dialogue_share + self.reasoning_share
        if not 0 <= fixed < 1:
            raise ValueError(f"MixtureRecipe: reasoning + pretraining + dialogue shares = {fixed}, must be in [0, 1)")

    def capped_count(self, task: TaskInfo, n: int) -> int:
        return min(n, self.task_caps.get(task.collection, self.default_task_cap))

    def collection_targets(self) -> dict[str, float]:
        """Each collection's intended share before renormalization for missing collections."""
        total_p = sum(self.proportions.values())
        rest = 1.0 - self.pretraining_share - self.dialogue_share
        shares = {b: rest * self.proportions.get(b, 0) / total_p if total_p else 0.0 for b in COLLECTIONS}
        r = self.reasoning_share
        src = self.reasoning_taken_from
        if r and src is not None and shares.get(src, 0) >= r:
            shares[src] -= r
        elif r:
            scale = (rest - r) / rest
            shares = {b: s * scale for b, s in shares.items()}
        shares.update(reasoning=r, pretraining=self.pretraining_share, dialogue=self.dialogue_share)
        return shares


@dataclasses.dataclass(frozen=True)
class MixtureRates:
    task_rates: dict[str, float]  # sums to 1
    collection_rates: dict[str, float]  # effective, after renormalization
    intended_collection_rates: dict[str, float]
    missing: tuple[str, ...]  # collections with a positive intended share and no task
    capped_counts: dict[str, int]  # per task, after the hard cap and EPS

    def report_lines(self) -> list[str]:
        lines = ["collection     intended  effective"]
        for c in sorted(set(self.intended_collection_rates) | set(self.collection_rates)):
            i, e = self.intended_collection_rates.get(c, 0.0), self.collection_rates.get(c, 0.0)
            if i or e:
                lines.append(f"{c:<14} {i:8.4f}  {e:9.4f}" + ("  MISSING (renormalized)" if c in self.missing else ""))
        return lines


def compute_rates(tasks: Sequence[TaskInfo], counts: Mapping[str, int], recipe: MixtureRecipe) -> MixtureRates:
    """Effective per-task sampling rates of `tasks` (train counts in `counts`) under `recipe`."""
    if not tasks:
        raise ValueError("compute_rates: no tasks")
    by_coll: dict[str, list[TaskInfo]] = {}
    capped: dict[str, int] = {}
    for t in tasks:
        if t.name not in counts:
            raise KeyError(f"no example count for task {t.name!r} (regenerate the counts file?)")
        capped[t.name] = min(recipe.capped_count(t, int(counts[t.name])), recipe.eps)
        if capped[t.name] > 0:
            by_coll.setdefault(t.collection, []).append(t)
    intended = recipe.collection_targets()
    present = {c: intended.get(c, 0.0) for c in by_coll}
    missing = tuple(sorted(c for c, s in intended.items() if s > 0 and c not in by_coll))
    unplanned = [c for c, s in present.items() if s == 0]
    total = sum(present.values())
    if total <= 0:
        raise ValueError(f"recipe gives zero mass to every present collection {sorted(by_coll)} "
                         f"(collections without a share: {unplanned})")
    coll_rates = {c: s / total for c, s in present.items() if s > 0}
    task_rates = {}
    for c, share in coll_rates.items():
        mass = sum(capped[t.name] for t in by_coll[c])
        for t in by_coll[c]:
            task_rates[t.name] = share * capped[t.name] / mass
    return MixtureRates(task_rates, coll_rates, intended, missing, capped)
