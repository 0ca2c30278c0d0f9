"""Promotion policies: which screened candidates are worth full training.

The search algorithm (Optuna) decides *what to try*; a promotion policy decides, from
the surrogate scores alone, *what to pay full training for* -- the scheduler half of
Ray Tune's split. A policy sees screened candidates as dicts with ``id``,
``surrogate`` (the config's ``surrogate:``, see search/surrogate.py; higher is better)
and the cost figures.
"""

from __future__ import annotations

import math
from typing import Any

from growsearch.search.config import PromotionSpec


class PromotionPolicy:
    """Base class: ``select(screened) -> ids`` in promotion order (best first)."""

    surrogate = "manifold_metric"  # the record key ranked by; the engine uses "surrogate"

    def select(self, screened: list[dict[str, Any]]) -> list[str]:
        raise NotImplementedError

    def _ranked(self, screened: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # ties broken by the cheaper candidate, then by id, so the order is total
        def key(c: dict[str, Any]) -> tuple:
            value = c[self.surrogate]
            return (-(value if math.isfinite(value) else -math.inf), c.get("params", 0), c["id"])

        return sorted(screened, key=key)


class TopK(PromotionPolicy):
    """The ``k`` best surrogate scores."""

    def __init__(self, k: int) -> None:
        self.k = k

    def select(self, screened: list[dict[str, Any]]) -> list[str]:
        return [c["id"] for c in self._ranked(screened)[: self.k]]


class TopFraction(PromotionPolicy):
    """The best ``fraction`` of the screened candidates (at least one)."""

    def __init__(self, fraction: float) -> None:
        self.fraction = fraction

    def select(self, screened: list[dict[str, Any]]) -> list[str]:
        n = max(1, math.ceil(self.fraction * len(screened))) if screened else 0
        return [c["id"] for c in self._ranked(screened)[:n]]


class Pareto(PromotionPolicy):
    """Candidates on the Pareto front of (high surrogate, low ``cost``)."""

    def __init__(self, cost: str = "params") -> None:
        self.cost = cost

    def select(self, screened: list[dict[str, Any]]) -> list[str]:
        def dominated(a: dict[str, Any]) -> bool:
            return any(b[self.surrogate] >= a[self.surrogate] and b[self.cost] <= a[self.cost]
                       and (b[self.surrogate] > a[self.surrogate] or b[self.cost] < a[self.cost])
                       for b in screened)

        return [c["id"] for c in self._ranked(screened) if not dominated(c)]


def make_policy(spec: PromotionSpec, surrogate: str = "manifold_metric") -> PromotionPolicy:
    """The policy of ``spec``, ranking by the record key ``surrogate``."""
    if spec.policy == "top_fraction":
        policy: PromotionPolicy = TopFraction(spec.fraction)
    elif spec.policy == "pareto":
        policy = Pareto(spec.cost)
    else:
        policy = TopK(spec.k)
    policy.surrogate = surrogate
    return policy
