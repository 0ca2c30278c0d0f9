"""Search efficiency: how much compute does each strategy spend to find a good candidate?

Every candidate of a pool is grown, scored by the manifold metric, and fully trained once
with the pool's recipe (seed 0), recording test score and forward+backward examples per
epoch. Training is deterministic, so a run stopped after epoch e is exactly the prefix of
the full curve, and each strategy can be replayed on the recorded curves:

* ``train_all``: train every candidate fully, in proposal order.
* ``random_k``: train k random candidates fully (k = the number ours promotes); averaged
  over many random draws, with the share of draws that ever reach the target.
* ``early_stopping_only``: ASHA over all candidates, in proposal order, no surrogate.
* ``surrogate_<name>_and_early_stopping``: score every candidate with the surrogate
  ``name`` (``manifold`` -- ours --, ``params``, ``naswot``, ``short_training`` at the
  metric's cost), promote the top k, ASHA over the promoted ones; ``random_and_early_stopping``:
  k random candidates, ASHA over them (averaged over draws).

The budget binds: only candidates with at most ``max_params`` parameters take part
(default: the upper edge of the pool's second-largest equal-parameter group, so that a
whole group of different expansions sits at the cap and "pick the biggest" cannot decide).

Reported per strategy: compute (forward+backward examples, the metric's forward passes at
1/3) and seconds until a candidate within 0.5 accuracy points of the pool's best has
*completed* training, total compute, and regret (best score in the pool - best completed
score) at a fixed budget of 25% of ``train_all``'s compute.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from typing import Any

import torch

from growsearch.bench import stats
from growsearch.bench.pools import Pool
from growsearch.bench.predictors import pool_base_model, pretrain_base
from growsearch.data import load_dataset
from growsearch.grow import ExpansionPlan, grow
from growsearch.metrics import PROXY_PROBE, ManifoldConfig, score_model
from growsearch.models import count_params
from growsearch.search.schedulers import ASHA
from growsearch.train import task_score, train


def _replay(order: list[int], curves: list[list[dict[str, float]]], asha: ASHA | None, start_cost: float,
            target: float, budget: float, start_seconds: float = 0.0) -> dict[str, Any]:
    """Train candidates in ``order`` (epoch by epoch, ASHA deciding at rungs); return when the
    target was reached, the total compute, and the best completed score within the budget."""
    cost, seconds = start_cost, start_seconds
    reach = reach_s = None
    best_in_budget = -math.inf
    for i in order:
        curve = curves[i]
        prev_fb = prev_s = 0.0
        completed = True
        for point in curve:
            cost += point["forward_backward"] - prev_fb
            seconds += point["seconds"] - prev_s
            prev_fb, prev_s = point["forward_backward"], point["seconds"]
            if asha is not None and point is not curve[-1] and not asha.on_epoch(str(i), int(point["epoch"]),
                                                                                 point["score"]):
                completed = False
                break
        if completed:
            final = curve[-1]["score"]
            if cost <= budget:
                best_in_budget = max(best_in_budget, final)
            if reach is None and final >= target:
                reach, reach_s = cost, seconds
    return {"compute_to_target": reach, "seconds_to_target": reach_s, "total_compute": cost,
            "total_seconds": seconds, "best_completed_within_budget": best_in_budget}


SURROGATES = ("manifold", "params", "naswot", "short_training")


def default_max_params(sizes: list[int]) -> int:
    """The upper edge of the second-largest equal-parameter group (all if fewer than two)."""
    groups = stats.equal_param_groups(sizes)
    if len(groups) < 2:
        return max(sizes)
    return max(sizes[i] for i in sorted(groups, key=lambda g: min(sizes[i] for i in g))[-2])


def _mean_of_draws(runs: list[dict[str, Any]], draws: int) -> dict[str, Any]:
    """Random strategies: mean compute over the draws that reach the target, and how many do."""
    reached = [r["compute_to_target"] for r in runs if r["compute_to_target"] is not None]
    return {"compute_to_target": statistics.mean(reached) if reached else None,
            "seconds_to_target": statistics.mean(r["seconds_to_target"] for r in runs if r["seconds_to_target"])
            if reached else None,
            "reach_rate": len(reached) / draws, "total_compute": statistics.mean(r["total_compute"] for r in runs),
            "best_completed_within_budget": statistics.mean(r["best_completed_within_budget"] for r in runs),
            "draws": draws}


def run_search_benchmark(pool: Pool, promote_fraction: float = 0.25, grace: int = 2, eta: int = 3,
                         budget_fraction: float = 0.25, draws: int = 500, max_params: int | None = None,
                         progress: Any = None) -> dict[str, Any]:
    start = time.perf_counter()
    torch.set_num_threads(1)
    task = load_dataset(pool.dataset)
    state, spec, _ = pretrain_base(pool)
    base = pool_base_model(state, spec)
    manifold = ManifoldConfig(**pool.manifold)
    grown_all = [(plan, init, grow(base, spec, ExpansionPlan.from_dict(plan), init=init, seed=0).model)
                 for plan, init in pool.candidates()]
    sizes = [count_params(m) for _, _, m in grown_all]
    cap = max_params if max_params is not None else default_max_params(sizes)
    todo = [g for g, n in zip(grown_all, sizes, strict=True) if n <= cap]
    candidates = []
    for i, (plan, init, grown) in enumerate(todo):
        scores = score_model(grown, task, manifold, proxies=True, short_recipe=pool.recipe)
        result = train(grown, task, pool.recipe, seed=0)
        curve = [{"epoch": h["epoch"], "score": task_score(h, task), "forward_backward": h["forward_backward"],
                  "seconds": h["seconds"]} for h in result.history]
        metric_cost = scores["cost"]["forward_backward"]
        candidates.append({"name": f"{ExpansionPlan.from_dict(plan).describe()}/{init}", "params": scores["params"],
                           "manifold_metric": scores["manifold_metric"], "metric_cost": metric_cost,
                           "metric_seconds": scores["cost"]["seconds"],
                           "surrogates": {"manifold": scores["manifold_metric"], "params": scores["params"],
                                          "naswot": scores["naswot"], "short_training": scores["short_training"]},
                           # screening compute of each surrogate (a forward pass counts 1/3)
                           "screening_costs": {"manifold": metric_cost, "params": 0.0,
                                               "naswot": PROXY_PROBE / 3, "short_training": metric_cost},
                           "curve": curve})
        if progress:
            progress(i + 1, len(todo), candidates[-1]["name"])
    curves = [c["curve"] for c in candidates]
    finals = [c[-1]["score"] for c in curves]
    best = max(finals)
    target = best - 0.005
    n = len(candidates)
    k = max(1, math.ceil(promote_fraction * n))
    all_cost = sum(c[-1]["forward_backward"] for c in curves)
    budget = budget_fraction * all_cost
    order = list(range(n))
    epochs = pool.recipe.epochs

    strategies = {"train_all": _replay(order, curves, None, 0.0, target, budget),
                  "early_stopping_only": _replay(order, curves, ASHA(epochs, grace, eta), 0.0, target, budget)}
    for name in SURROGATES:
        screening = sum(c["screening_costs"][name] for c in candidates)
        screening_s = sum(c["metric_seconds"] for c in candidates) if name == "manifold" else 0.0
        # higher is better; ties (equal params) broken by proposal order
        promoted = sorted(order, key=lambda i: -candidates[i]["surrogates"][name])[:k]
        strategies[f"surrogate_{name}_and_early_stopping"] = {
            **_replay(promoted, curves, ASHA(epochs, grace, eta), screening, target, budget, screening_s),
            "screening_compute": screening, "promoted": [candidates[i]["name"] for i in promoted]}
    rng = random.Random(0)
    with_es = [_replay(rng.sample(order, k), curves, ASHA(epochs, grace, eta), 0.0, target, budget)
               for _ in range(draws)]
    strategies["random_and_early_stopping"] = _mean_of_draws(with_es, draws)
    rng = random.Random(0)
    runs = [_replay(rng.sample(order, k), curves, None, 0.0, target, budget) for _ in range(draws)]
    strategies["random_k"] = _mean_of_draws(runs, draws)
    for s in strategies.values():
        s["regret_at_budget"] = best - s["best_completed_within_budget"]
        reach = s["compute_to_target"]
        s["compute_to_target_vs_train_all"] = None if reach is None else reach / all_cost
    return {"pool": pool.name, "candidates": [{k2: v for k2, v in c.items() if k2 != "curve"} | {"final": c["curve"][-1]
                                                                                                ["score"]}
                                              for c in candidates],
            "best_score": best, "target": target, "k": k, "asha": {"grace": grace, "eta": eta},
            "max_params": cap, "candidates_at_or_below_cap": n, "candidates_in_pool": len(grown_all),
            "budget_fraction": budget_fraction, "budget_compute": budget, "train_all_compute": all_cost,
            "strategies": strategies, "seconds": time.perf_counter() - start}
