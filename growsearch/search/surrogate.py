"""Which score decides promotion: the ``surrogate:`` of a search config.

``manifold`` (default) is the manifold metric (docs/metric.md); ``params``, ``naswot``,
``snip`` and ``short_training`` are the baselines of the predictor benchmark, on the
same probe; a list (``[manifold, naswot]``) ranks the screened candidates by each and
promotes by the mean rank (``rank_mean``). Higher is better for every one of them
(``params``: the bigger candidate, the free "pick the biggest" baseline).
"""

from __future__ import annotations

import math
from typing import Any

from torch import nn

from growsearch.data import Task
from growsearch.errors import ConfigError
from growsearch.metrics import PROXY_PROBE, short_training, zero_cost_proxies
from growsearch.train import TrainRecipe

SURROGATES = ("manifold", "params", "naswot", "snip", "short_training")


def surrogate_names(spec: str | list[str]) -> list[str]:
    """The scores ``spec`` needs, checked: one name, or a list of two or more for rank_mean."""
    names = [spec] if isinstance(spec, str) else list(spec)
    for i, name in enumerate(names):
        if name not in SURROGATES:
            where = "surrogate" if isinstance(spec, str) else f"surrogate[{i}]"
            raise ConfigError(f"{where}: got {name!r}; allowed: {', '.join(SURROGATES)} "
                              "(or a list of them for rank_mean)")
    if not isinstance(spec, str) and (len(names) < 2 or len(set(names)) != len(names)):
        raise ConfigError(f"surrogate: got {names}; allowed: a list of two or more different names (rank_mean)")
    return names


def describe(spec: str | list[str]) -> str:
    """``manifold``, or ``rank_mean(manifold,naswot)``: what the leaderboard and MLflow say."""
    return spec if isinstance(spec, str) else f"rank_mean({','.join(spec)})"


def surrogate_parts(model: nn.Module, task: Task, scores: dict[str, Any], names: list[str],
                    recipe: TrainRecipe, probe_size: int, seed: int) -> dict[str, float]:
    """Each needed score of a grown ``model``; ``scores`` is :func:`score_model`'s output."""
    parts: dict[str, float] = {}
    probe = task.probe(probe_size, seed=seed)
    proxies = tuple(n for n in names if n in ("naswot", "snip"))
    if proxies:
        parts.update(zero_cost_proxies(model, probe[0][:PROXY_PROBE], probe[1][:PROXY_PROBE], proxies))
    if "short_training" in names:
        parts["short_training"] = short_training(model, task, scores["cost"]["forward_backward"], recipe,
                                                 probe, seed=seed)["short_training"]
    if "params" in names:
        parts["params"] = float(scores["params"])
    if "manifold" in names:
        parts["manifold"] = scores["manifold_metric"]
    return parts


def surrogate_values(records: list[dict[str, Any]], spec: str | list[str]) -> dict[str, float]:
    """Each screened record's surrogate (record id -> value; higher is better): the one
    score, or minus the mean rank over the listed scores (rank 0 = best, ties share the
    mean rank, a missing or non-finite score ranks last)."""
    names = surrogate_names(spec)
    if len(names) == 1:
        return {r["id"]: _finite(r.get("surrogate_parts", {}).get(names[0])) for r in records}
    total = {r["id"]: 0.0 for r in records}
    for name in names:
        values = sorted(_finite(r.get("surrogate_parts", {}).get(name)) for r in records)
        for r in records:
            v = _finite(r.get("surrogate_parts", {}).get(name))
            greater = sum(1 for u in values if u > v)
            ties = sum(1 for u in values if u == v)
            total[r["id"]] += greater + (ties - 1) / 2
    return {cid: -t / len(names) for cid, t in total.items()}


def _finite(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else -math.inf
