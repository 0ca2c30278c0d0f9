"""Search efficiency: how much compute does each strategy spend to find a good candidate?

For each seed, every candidate of a pool is grown, scored by the manifold metric, and
fully trained once with the pool's recipe, recording per epoch its validation score
(what every decision reads), its test score (what is reported), and its training
FLOPs. Training is deterministic, so a run stopped after epoch e is exactly the prefix
of the full curve, and each strategy can be replayed on the recorded curves:

* ``train_all``: train every candidate fully, in proposal order.
* ``random_k``: candidates in a uniformly random order. Compute and seconds to target
  are the *expected* values over random orders, training on past the first k when
  none of them reaches the target (:func:`expected_cost_to_first_hit`, exact); total
  compute and regret are averaged over random draws of k candidates, with the share of
  draws whose k candidates reach the target.
* ``early_stopping_only``: ASHA over all candidates, in proposal order, no surrogate.
* ``surrogate_and_early_stopping`` (ours): manifold metric on every candidate, promote the
  top k, ASHA over the promoted ones.

Compute is counted in FLOPs (:func:`growsearch.metrics.cost.training_flops`: forward +
backward = 3x the forward FLOPs of the candidate that trains; the metric's forward-only
passes at 1x). Reported per strategy: compute and seconds until a candidate whose *test*
score is within 0.5 accuracy points of the pool's best has completed training, total
compute, and regret at a budget of 25% of ``train_all``'s compute: the pool's best test
score minus the test score of the candidate the strategy would pick -- the best
*validation* score among those it completed within the budget.

Everything is measured on each of ``seeds`` (growth, metric and training seed); the
strategies' figures are the means over seeds, with the spread (min, max) beside them --
on one machine a seed reproduces exactly, across machines floating-point differences can
flip a close early-stopping decision, which the spread makes visible.
"""

from __future__ import annotations

import dataclasses
import math
import random
import statistics
import time
from collections.abc import Sequence
from typing import Any

import torch

from growsearch.bench.pools import Pool
from growsearch.bench.predictors import pool_base_model, pretrain_base
from growsearch.data import load_dataset
from growsearch.grow import ExpansionPlan, grow
from growsearch.metrics import ManifoldConfig, manifold_metric
from growsearch.metrics.cost import flops_per_example, training_flops
from growsearch.search.schedulers import ASHA
from growsearch.train import task_score, train

SEEDS = (0, 1, 2)
STRATEGIES = ("train_all", "random_k", "early_stopping_only", "surrogate_and_early_stopping")
FIGURES = ("compute_to_target", "compute_to_target_vs_train_all", "seconds_to_target", "total_compute",
           "regret_at_budget")


def expected_cost_to_first_hit(costs: Sequence[float], hits: Sequence[bool]) -> float | None:
    """Expected cost of paying for items in a uniformly random order until the first hit
    has been paid for (None when nothing hits).

    With g hits, a miss comes before every hit with probability 1/(g+1), and the first
    hit is each hit with probability 1/g, so the expectation is
    ``sum(miss costs) / (g + 1) + mean(hit costs)``."""
    hit_costs = [c for c, h in zip(costs, hits, strict=True) if h]
    if not hit_costs:
        return None
    misses = sum(c for c, h in zip(costs, hits, strict=True) if not h)
    return misses / (len(hit_costs) + 1) + statistics.mean(hit_costs)


def _replay(order: list[int], curves: list[list[dict[str, float]]], asha: ASHA | None, start_cost: float,
            target: float, budget: float, start_seconds: float = 0.0) -> dict[str, Any]:
    """Train candidates in ``order`` (epoch by epoch, ASHA deciding on validation scores at
    rungs); return when a candidate reaching the target (test score) completed, the total
    compute, and the test score of the best-validation candidate completed within the budget."""
    cost, seconds = start_cost, start_seconds
    reach = reach_s = None
    picked_val, picked_test = -math.inf, -math.inf
    for i in order:
        curve = curves[i]
        prev_flops = prev_s = 0.0
        completed = True
        for point in curve:
            cost += point["flops"] - prev_flops
            seconds += point["seconds"] - prev_s
            prev_flops, prev_s = point["flops"], point["seconds"]
            if asha is not None and point is not curve[-1] and not asha.on_epoch(str(i), int(point["epoch"]),
                                                                                 point["score"]):
                completed = False
                break
        if completed:
            final = curve[-1]
            if cost <= budget and final["score"] > picked_val:
                picked_val, picked_test = final["score"], final["test_score"]
            if reach is None and final["test_score"] >= target:
                reach, reach_s = cost, seconds
    return {"compute_to_target": reach, "seconds_to_target": reach_s, "total_compute": cost,
            "total_seconds": seconds, "picked_within_budget": picked_test}


def measure_candidates(pool: Pool, base: torch.nn.Module, spec: dict[str, Any], seed: int, progress: Any = None,
                       done: int = 0, total: int = 0) -> list[dict[str, Any]]:
    """Grow ``base``, score and fully train every candidate of ``pool`` with ``seed``; the curves."""
    task = load_dataset(pool.dataset)
    manifold = dataclasses.replace(ManifoldConfig(**pool.manifold), seed=seed)
    candidates = []
    for plan, init in pool.candidates():
        grown = grow(base, spec, ExpansionPlan.from_dict(plan), init=init, seed=seed).model
        forward = flops_per_example(grown, task.x_train[:1])
        metric = manifold_metric(grown, task.x_train, task.y_train, manifold)
        result = train(grown, task, pool.recipe, seed=seed)
        curve = [{"epoch": h["epoch"], "score": task_score(h, task, "val"), "test_score": task_score(h, task, "test"),
                  "forward_backward": h["forward_backward"], "flops": training_flops(forward, h["forward_backward"]),
                  "seconds": h["seconds"]} for h in result.history]
        candidates.append({"name": f"{ExpansionPlan.from_dict(plan).describe()}/{init}", "flops": forward,
                           "manifold_metric": metric.metric, "metric_cost": metric.cost,
                           "metric_flops": training_flops(forward, metric.cost), "metric_seconds": metric.seconds,
                           "curve": curve})
        if progress:
            progress(done + len(candidates), total, candidates[-1]["name"])
    return candidates


def replay_strategies(candidates: list[dict[str, Any]], epochs: int, promote_fraction: float = 0.25,
                      grace: int = 2, eta: int = 3, budget_fraction: float = 0.25, draws: int = 500,
                      seed: int = 0) -> dict[str, Any]:
    """Every strategy replayed on one seed's measured curves."""
    curves = [c["curve"] for c in candidates]
    finals = [c[-1]["test_score"] for c in curves]
    best = max(finals)
    target = best - 0.005
    n = len(candidates)
    k = max(1, math.ceil(promote_fraction * n))
    full = [c[-1]["flops"] for c in curves]
    all_cost = sum(full)
    budget = budget_fraction * all_cost
    order = list(range(n))

    strategies = {"train_all": _replay(order, curves, None, 0.0, target, budget),
                  "early_stopping_only": _replay(order, curves, ASHA(epochs, grace, eta), 0.0, target, budget)}
    screening = sum(c["metric_flops"] for c in candidates)
    screening_s = sum(c["metric_seconds"] for c in candidates)
    promoted = sorted(order, key=lambda i: -candidates[i]["manifold_metric"])[:k]
    strategies["surrogate_and_early_stopping"] = {
        **_replay(promoted, curves, ASHA(epochs, grace, eta), screening, target, budget, screening_s),
        "screening_compute": screening, "promoted": [candidates[i]["name"] for i in promoted]}
    rng = random.Random(seed)
    runs = [_replay(rng.sample(order, k), curves, None, 0.0, target, budget) for _ in range(draws)]
    hits = [f >= target for f in finals]
    strategies["random_k"] = {
        "compute_to_target": expected_cost_to_first_hit(full, hits),
        "seconds_to_target": expected_cost_to_first_hit([c[-1]["seconds"] for c in curves], hits),
        "reach_rate_within_k": sum(r["compute_to_target"] is not None for r in runs) / draws,
        "total_compute": statistics.mean(r["total_compute"] for r in runs),
        "picked_within_budget": statistics.mean(r["picked_within_budget"] for r in runs), "draws": draws}
    for s in strategies.values():
        s["regret_at_budget"] = best - s["picked_within_budget"]
        reach = s["compute_to_target"]
        s["compute_to_target_vs_train_all"] = None if reach is None else reach / all_cost
    return {"best_score": best, "target": target, "k": k, "budget_compute": budget, "train_all_compute": all_cost,
            "strategies": strategies}


def _summary(per_seed: list[dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Mean over seeds of each figure (None if some seed never reached the target) and its (min, max)."""
    means: dict[str, dict[str, Any]] = {}
    spread: dict[str, dict[str, Any]] = {}
    for name in STRATEGIES:
        means[name], spread[name] = {}, {}
        for fig in FIGURES:
            values = [r["strategies"][name][fig] for r in per_seed]
            finite = [v for v in values if v is not None]
            means[name][fig] = statistics.mean(finite) if len(finite) == len(values) else None
            spread[name][fig] = [min(finite), max(finite)] if finite else None
        means[name]["reached_in_seeds"] = sum(r["strategies"][name]["compute_to_target"] is not None
                                              for r in per_seed)
        if name == "random_k":
            means[name]["reach_rate_within_k"] = statistics.mean(r["strategies"][name]["reach_rate_within_k"]
                                                                 for r in per_seed)
            means[name]["draws"] = per_seed[0]["strategies"][name]["draws"]
        if name == "surrogate_and_early_stopping":
            means[name]["screening_compute"] = statistics.mean(r["strategies"][name]["screening_compute"]
                                                               for r in per_seed)
    return means, spread


def run_search_benchmark(pool: Pool, promote_fraction: float = 0.25, grace: int = 2, eta: int = 3,
                         budget_fraction: float = 0.25, draws: int = 500, seeds: Sequence[int] = SEEDS,
                         progress: Any = None) -> dict[str, Any]:
    start = time.perf_counter()
    torch.set_num_threads(1)
    n = len(pool.candidates())
    state, spec, _ = pretrain_base(pool)
    base = pool_base_model(state, spec)
    per_seed = []
    for j, seed in enumerate(seeds):
        candidates = measure_candidates(pool, base, spec, seed, progress, j * n, n * len(seeds))
        replay = replay_strategies(candidates, pool.recipe.epochs, promote_fraction, grace, eta, budget_fraction,
                                   draws, seed)
        per_seed.append({"seed": seed, **replay,
                         # curves kept: a changed strategy can be replayed without training again
                         "candidates": [{**c, "final_val": c["curve"][-1]["score"],
                                         "final_test": c["curve"][-1]["test_score"]} for c in candidates]})
    strategies, spread = _summary(per_seed)
    return {"pool": pool.name, "n_candidates": n, "seeds": list(seeds),
            "best_score": statistics.mean(r["best_score"] for r in per_seed),
            "k": per_seed[0]["k"], "asha": {"grace": grace, "eta": eta}, "budget_fraction": budget_fraction,
            "train_all_compute": statistics.mean(r["train_all_compute"] for r in per_seed),
            "compute_unit": "training FLOPs (forward + backward = 3 x forward)",
            "strategies": strategies, "spread": spread, "per_seed": per_seed,
            "seconds": time.perf_counter() - start}
