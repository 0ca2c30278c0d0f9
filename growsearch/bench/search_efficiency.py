"""Search efficiency: how much compute does each strategy spend to find a good candidate?

For each seed, every candidate of a pool is grown, scored by the manifold metric, and
fully trained once with the pool's recipe, recording per epoch its validation score
(what every decision reads), its test score (what is reported), and its training
FLOPs. Training is deterministic, so a run stopped after epoch e is exactly the prefix
of the full curve, and each strategy can be replayed on the recorded curves:

* ``train_all``: train every candidate fully.
* ``random_k``: candidates in a uniformly random order. Compute and seconds to target
  are the *expected* values over random orders, training on past the first k when
  none of them reaches the target (:func:`expected_cost_to_first_hit`, exact); total
  compute and regret are averaged over random draws of k candidates, with the share of
  draws whose k candidates reach the target.
* ``early_stopping_only``: ASHA over all candidates, no surrogate.
* ``surrogate_<name>_and_early_stopping``: score every candidate with the surrogate
  ``name`` -- ``manifold`` (growsearch's), ``params`` (free: "pick the biggest"),
  ``naswot`` (one forward pass on the proxy probe) or ``short_training`` (training for
  the metric's cost) --, promote the top k, ASHA over them, best score first.
* ``random_and_early_stopping``: k random candidates, ASHA over them: what pruning earns
  without a surrogate.
* ``budgeted_manifold``, ``budgeted_params``, ``budgeted_no_surrogate``: growsearch's budgeted
  search (``budget:``; ``surrogate: manifold``, ``params`` and ``none``), the real
  :class:`~growsearch.search.budget.BudgetedSearch` run on the recorded screens and curves
  (:mod:`growsearch.bench.budget_replay`), seeded with the pool's seed: one search given the
  regret budget (its regret) and one given train-all's compute (its compute to target).
  Replayed by ``--replay FILE --budgeted`` (and ``--rescore``); a plain ``--replay`` keeps the
  recorded figures of these strategies (they do not depend on the random orders).

The pools list their candidates in ascending size, an order no user picks on purpose, and
ASHA's decisions depend on the order trainings reach a rung. So everything that depends on
the order candidates are taken in -- train-all's and ASHA's order, random pruning's k, and
the order among a surrogate's *tied* candidates (``params`` ties every expansion with its
other inits) -- is averaged over the **same** random orders (``draws`` permutations drawn
from the seed, :func:`random_orders`): compute and seconds to target are the means over
the orders when every order reaches the target, with the **reach rate** (the share of the
orders that do) and the mean over the orders that do beside them; total compute and regret
are means over every order. A surrogate without ties is replayed once. The curves are
kept in the result, so :func:`replay_result` (``python -m growsearch.bench.search_efficiency
--replay FILE``) replays a recorded result again without training.

Every strategy is replayed twice on the same curves: on the whole pool, and under a
parameter budget that **binds** (``max_params``, by default the upper edge of the
pool's second-largest equal-parameter group, see :func:`default_max_params`): only the
candidates at or below the cap take part, so that a whole group of different
expansions of about the same size sits at the cap and "pick the biggest" cannot decide
among them -- the question a user with a fixed budget asks.

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

import copy
import dataclasses
import math
import random
import statistics
import time
from collections.abc import Sequence
from typing import Any

import torch

from growsearch.bench import stats
from growsearch.bench.budget_replay import BUDGETED, BudgetContext, pool_context, replay_budgeted
from growsearch.bench.pools import Pool
from growsearch.bench.predictors import pool_base_model, pretrain_base
from growsearch.data import load_dataset
from growsearch.errors import ConfigError
from growsearch.grow import ExpansionPlan, grow
from growsearch.metrics import PROXY_PROBE, ManifoldConfig, score_model
from growsearch.metrics.cost import flops_per_example, training_flops
from growsearch.models import count_params
from growsearch.search.schedulers import ASHA
from growsearch.train import task_score, train

SEEDS = (0, 1, 2)
SURROGATES = ("manifold", "params", "naswot", "short_training")
STRATEGIES = ("train_all", "random_k", "early_stopping_only", "random_and_early_stopping",
              *(f"surrogate_{name}_and_early_stopping" for name in SURROGATES), *BUDGETED)
FIGURES = ("compute_to_target", "compute_to_target_vs_train_all", "seconds_to_target", "total_compute",
           "regret_at_budget")
#: figures of the strategies averaged over random orders only
ORDER_FIGURES = ("compute_to_target_when_reached", "compute_to_target_when_reached_vs_train_all",
                 "seconds_to_target_when_reached")


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
            "total_seconds": seconds,
            # None: nothing completed within the budget (e.g. screening alone spent it)
            "picked_within_budget": None if picked_test == -math.inf else picked_test}


def _grown_candidates(pool: Pool, base: torch.nn.Module, spec: dict[str, Any], seed: int):
    """``(name, grown model)`` of every candidate of ``pool``, grown with ``seed``."""
    for plan, init in pool.candidates():
        yield (f"{ExpansionPlan.from_dict(plan).describe()}/{init}",
               grow(base, spec, ExpansionPlan.from_dict(plan), init=init, seed=seed).model)


def _screen(pool: Pool, task: Any, grown: torch.nn.Module, seed: int) -> dict[str, Any]:
    """Every surrogate's score of a grown candidate (before training) and what scoring costs."""
    manifold = dataclasses.replace(ManifoldConfig(**pool.manifold), seed=seed)
    forward = flops_per_example(grown, task.x_train[:1])
    scores = score_model(grown, task, manifold, proxies=True, short_recipe=pool.recipe)
    metric_cost = scores["cost"]["forward_backward"]
    return {"flops": forward, "params": scores["params"], "manifold_metric": scores["manifold_metric"],
            "manifold_bound": scores["manifold"]["bound"],
            "metric_cost": metric_cost, "metric_flops": training_flops(forward, metric_cost),
            "metric_seconds": scores["cost"]["seconds"],
            "surrogates": {"manifold": scores["manifold_metric"], "params": scores["params"],
                           "naswot": scores["naswot"], "short_training": scores["short_training"]},
            # what scoring every candidate costs each surrogate: the metric and short
            # training train (3x forward per example); naswot is one forward pass
            "screening_flops": {"manifold": training_flops(forward, metric_cost), "params": 0.0,
                                "naswot": forward * PROXY_PROBE,
                                "short_training": training_flops(forward, metric_cost)}}


def measure_candidates(pool: Pool, base: torch.nn.Module, spec: dict[str, Any], seed: int, progress: Any = None,
                       done: int = 0, total: int = 0) -> list[dict[str, Any]]:
    """Grow ``base``, score and fully train every candidate of ``pool`` with ``seed``; the curves."""
    task = load_dataset(pool.dataset)
    candidates = []
    for name, grown in _grown_candidates(pool, base, spec, seed):
        screened = _screen(pool, task, grown, seed)
        result = train(grown, task, pool.recipe, seed=seed)
        forward = screened["flops"]
        curve = [{"epoch": h["epoch"], "score": task_score(h, task, "val"), "test_score": task_score(h, task, "test"),
                  "forward_backward": h["forward_backward"], "flops": training_flops(forward, h["forward_backward"]),
                  "seconds": h["seconds"]} for h in result.history]
        candidates.append({"name": name, **screened, "curve": curve})
        if progress:
            progress(done + len(candidates), total, candidates[-1]["name"])
    return candidates


def rescore_result(result: dict[str, Any], pool: Pool) -> dict[str, Any]:
    """``result`` with every candidate's surrogate scores computed again by this version (the
    grown candidates are the same: growth is deterministic per seed), its recorded curves
    kept -- for a changed surrogate, without training again. Replay it afterwards."""
    state, spec, _ = pretrain_base(pool)
    base = pool_base_model(state, spec)
    task = load_dataset(pool.dataset)
    torch.set_num_threads(1)
    out = copy.deepcopy(result)
    for run in out["per_seed"]:
        grown = dict(_grown_candidates(pool, base, spec, run["seed"]))
        for c in run["candidates"]:
            if c["name"] not in grown:
                raise ConfigError(f"--rescore: candidate {c['name']} is not in pool {pool.name} as it is now")
            c.update(_screen(pool, task, grown[c["name"]], run["seed"]))
    return out


def _mean_or_none(values: list[float | None]) -> float | None:
    """The mean, or None when some value is None (a draw that completed nothing in budget)."""
    return None if any(v is None for v in values) else statistics.mean(values)


def random_orders(n: int, orders: int, seed: int = 0) -> list[list[int]]:
    """``orders`` uniformly random permutations of ``range(n)``, drawn from ``seed``: the
    orders every order-dependent strategy of one replay is averaged over (the same ones)."""
    rng = random.Random(seed)
    return [rng.sample(range(n), n) for _ in range(orders)]


def _over_orders(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """A strategy's figures averaged over its replays in random orders: compute and seconds
    to target are the means over the orders when every order reaches the target (None
    otherwise: an order that never reaches it has no compute to target), with
    ``reach_rate``, the share of the orders that do; total compute and the pick within the
    budget are means over every order."""
    reached = [r for r in runs if r["compute_to_target"] is not None]
    every = len(reached) == len(runs)
    return {"compute_to_target": statistics.mean(r["compute_to_target"] for r in runs) if every else None,
            "seconds_to_target": statistics.mean(r["seconds_to_target"] for r in runs) if every else None,
            "reach_rate": len(reached) / len(runs),
            # the mean over the orders that do reach it: beside the reach rate, never in place of the mean
            "compute_to_target_when_reached": statistics.mean(r["compute_to_target"] for r in reached)
            if reached else None,
            "seconds_to_target_when_reached": statistics.mean(r["seconds_to_target"] for r in reached)
            if reached else None,
            "total_compute": statistics.mean(r["total_compute"] for r in runs),
            "total_seconds": statistics.mean(r["total_seconds"] for r in runs),
            "picked_within_budget": _mean_or_none([r["picked_within_budget"] for r in runs]),
            "orders": len(runs),
            # how many different replays the orders gave: 1 for a surrogate without ties
            "orders_replayed": len({id(r) for r in runs})}


def replay_strategies(candidates: list[dict[str, Any]], epochs: int, promote_fraction: float = 0.25,
                      grace: int = 2, eta: int = 3, budget_fraction: float = 0.25, draws: int = 500,
                      seed: int = 0, budget_ctx: BudgetContext | None = None) -> dict[str, Any]:
    """Every strategy replayed on one seed's measured curves.

    Whatever depends on the order candidates are taken in -- train-all's and ASHA's order,
    which k candidates random pruning draws, and which of a surrogate's tied candidates is
    promoted and trained first -- is averaged over the same ``draws`` random orders
    (:func:`random_orders` from ``seed``): a proposal order (in the pools, ascending size) is
    no order a user would pick on purpose. A surrogate orders its promoted candidates by
    its score, best first; only ties fall back on the random order. With ``budget_ctx`` the
    budgeted search's strategies (:data:`~growsearch.bench.budget_replay.BUDGETED`) too."""
    curves = [c["curve"] for c in candidates]
    finals = [c[-1]["test_score"] for c in curves]
    best = max(finals)
    target = best - 0.005
    n = len(candidates)
    k = max(1, math.ceil(promote_fraction * n))
    full = [c[-1]["flops"] for c in curves]
    all_cost = sum(full)
    budget = budget_fraction * all_cost
    orders = random_orders(n, draws, seed)
    memo: dict[tuple[Any, ...], dict[str, Any]] = {}

    def replay(order: list[int], asha: bool, start_cost: float = 0.0, start_seconds: float = 0.0) -> dict[str, Any]:
        key = (asha, start_cost, start_seconds, tuple(order))  # a surrogate without ties: one replay
        if key not in memo:
            memo[key] = _replay(list(order), curves, ASHA(epochs, grace, eta) if asha else None, start_cost,
                                target, budget, start_seconds)
        return memo[key]

    strategies = {"train_all": _over_orders([replay(o, False) for o in orders]),
                  "early_stopping_only": _over_orders([replay(o, True) for o in orders])}
    for name in SURROGATES:
        screening = sum(c["screening_flops"][name] for c in candidates)
        screening_s = sum(c["metric_seconds"] for c in candidates) if name == "manifold" else 0.0
        runs, promoted_sets = [], set()
        for o in orders:
            place = {i: j for j, i in enumerate(o)}
            promoted = sorted(range(n), key=lambda i: (-candidates[i]["surrogates"][name], place[i]))[:k]
            promoted_sets.add(frozenset(promoted))
            runs.append(replay(promoted, True, screening, screening_s))
        by_score = sorted(range(n), key=lambda i: -candidates[i]["surrogates"][name])  # ties: proposal order
        strategies[f"surrogate_{name}_and_early_stopping"] = {
            **_over_orders(runs), "screening_compute": screening,
            "promoted": [candidates[i]["name"] for i in by_score[:k]],
            # more than one set: ties at the k-th place, broken by the random order
            "promoted_sets": len(promoted_sets)}
    pruned = _over_orders([replay(o[:k], True) for o in orders])
    strategies["random_and_early_stopping"] = {**pruned, "reach_rate_within_k": pruned["reach_rate"],
                                               "draws": draws}
    runs = [replay(o[:k], False) for o in orders]
    hits = [f >= target for f in finals]
    strategies["random_k"] = {
        "compute_to_target": expected_cost_to_first_hit(full, hits),
        "seconds_to_target": expected_cost_to_first_hit([c[-1]["seconds"] for c in curves], hits),
        "reach_rate_within_k": sum(r["compute_to_target"] is not None for r in runs) / draws,
        "total_compute": statistics.mean(r["total_compute"] for r in runs),
        "picked_within_budget": _mean_or_none([r["picked_within_budget"] for r in runs]), "draws": draws}
    if budget_ctx is not None:
        for name, surrogate in BUDGETED.items():
            strategies[name] = replay_budgeted(candidates, budget_ctx, epochs, surrogate, seed, grace, eta, target,
                                               budget, all_cost)
    for s in strategies.values():
        s["regret_at_budget"] = None if s["picked_within_budget"] is None else best - s["picked_within_budget"]
        for fig in ("compute_to_target", "compute_to_target_when_reached"):
            if fig in s:
                s[f"{fig}_vs_train_all"] = None if s[fig] is None else s[fig] / all_cost
    return {"best_score": best, "target": target, "k": k, "budget_compute": budget, "train_all_compute": all_cost,
            "orders": {"count": draws, "seed": seed}, "strategies": strategies}


def default_max_params(params: Sequence[int]) -> int:
    """The parameter budget that binds on a pool: the upper edge of its second-largest
    equal-parameter group (:func:`growsearch.bench.stats.equal_param_groups`), so that the
    group of different expansions at the cap competes on more than size; the largest
    candidate's size when the pool has fewer than two groups."""
    groups = stats.equal_param_groups(params)
    if len(groups) < 2:
        return max(params)
    return max(params[i] for i in groups[-2])


def _summary(per_seed: list[dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Mean over seeds of each figure (None if some seed never reached the target) and its (min, max)."""
    means: dict[str, dict[str, Any]] = {}
    spread: dict[str, dict[str, Any]] = {}
    for name in (n for n in STRATEGIES if n in per_seed[0]["strategies"]):  # budgeted ones: when replayed
        means[name], spread[name] = {}, {}
        first = per_seed[0]["strategies"][name]
        for fig in (*FIGURES, *(f for f in ORDER_FIGURES if f in first)):
            values = [r["strategies"][name][fig] for r in per_seed]
            finite = [v for v in values if v is not None]
            means[name][fig] = statistics.mean(finite) if len(finite) == len(values) else None
            spread[name][fig] = [min(finite), max(finite)] if finite else None
        # on a seed, a strategy averaged over random orders reaches the target when every order does
        means[name]["reached_in_seeds"] = sum(r["strategies"][name]["compute_to_target"] is not None
                                              for r in per_seed)
        for extra in ("reach_rate", "reach_rate_within_k", "screening_compute"):
            if extra in first:
                means[name][extra] = statistics.mean(r["strategies"][name][extra] for r in per_seed)
        if "reach_rate" in first:
            means[name]["reach_rate_by_seed"] = [r["strategies"][name]["reach_rate"] for r in per_seed]
            means[name]["orders"] = first["orders"]
            means[name]["orders_replayed"] = max(r["strategies"][name]["orders_replayed"] for r in per_seed)
        if "draws" in first:
            means[name]["draws"] = first["draws"]
    return means, spread


def _replay_seed(seed: int, candidates: list[dict[str, Any]], sizes: Sequence[int], cap: int, epochs: int,
                 promote_fraction: float, grace: int, eta: int, budget_fraction: float,
                 draws: int, budget_ctx: BudgetContext | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """One seed's replays, on the whole pool and under ``cap``: its ``per_seed`` entries."""
    capped = [c for c, size in zip(candidates, sizes, strict=True) if size <= cap]
    replay = replay_strategies(candidates, epochs, promote_fraction, grace, eta, budget_fraction, draws, seed,
                               budget_ctx)
    whole = {"seed": seed, **replay,
             # curves kept: a changed strategy can be replayed without training again (replay_result)
             "candidates": [{**c, "final_val": c["curve"][-1]["score"], "final_test": c["curve"][-1]["test_score"]}
                            for c in candidates]}
    under = {"seed": seed, **replay_strategies(capped, epochs, promote_fraction, grace, eta, budget_fraction, draws,
                                               seed, budget_ctx),
             "candidates": [c["name"] for c in capped]}
    return whole, under


def _assemble(name: str, n: int, seeds: Sequence[int], sizes: Sequence[int], cap: int, max_params_default: bool,
              per_seed: list[dict[str, Any]], per_seed_capped: list[dict[str, Any]], promote_fraction: float,
              grace: int, eta: int, budget_fraction: float, draws: int) -> dict[str, Any]:
    strategies, spread = _summary(per_seed)
    capped_strategies, capped_spread = _summary(per_seed_capped)
    at_cap = stats.param_bin(cap)
    return {"pool": name, "n_candidates": n, "seeds": list(seeds),
            "best_score": statistics.mean(r["best_score"] for r in per_seed),
            "k": per_seed[0]["k"], "promote_fraction": promote_fraction, "asha": {"grace": grace, "eta": eta},
            "budget_fraction": budget_fraction,
            "orders": {"count": draws, "seed": "each seed's own (random.Random(seed))",
                       "averaged": "every strategy whose result depends on the order candidates are taken in"},
            "train_all_compute": statistics.mean(r["train_all_compute"] for r in per_seed),
            "compute_unit": "training FLOPs (forward + backward = 3 x forward)",
            "strategies": strategies, "spread": spread, "per_seed": per_seed,
            "budget": {"max_params": cap, "max_params_default": max_params_default,
                       "n_candidates": len(per_seed_capped[0]["candidates"]),
                       "candidates_at_cap": sum(stats.param_bin(p) == at_cap for p in sizes if p <= cap),
                       "best_score": statistics.mean(r["best_score"] for r in per_seed_capped),
                       "k": per_seed_capped[0]["k"], "strategies": capped_strategies, "spread": capped_spread,
                       "per_seed": per_seed_capped}}


def run_search_benchmark(pool: Pool, promote_fraction: float = 0.25, grace: int = 2, eta: int = 3,
                         budget_fraction: float = 0.25, draws: int = 500, seeds: Sequence[int] = SEEDS,
                         max_params: int | None = None, progress: Any = None,
                         budgeted: bool = False) -> dict[str, Any]:
    """The search benchmark on ``pool`` (see the module docstring); a JSON-ready dict with the
    whole pool's figures at the top level and the binding budget's under ``budget``.
    ``budgeted``: the budgeted search's strategies too."""
    start = time.perf_counter()
    torch.set_num_threads(1)
    n = len(pool.candidates())
    state, spec, _ = pretrain_base(pool)
    base = pool_base_model(state, spec)
    # sizes are the architecture's, the same on every seed: the cap is checked before any training
    sizes = [count_params(grow(base, spec, ExpansionPlan.from_dict(plan), init=init).model)
             for plan, init in pool.candidates()]
    cap = default_max_params(sizes) if max_params is None else max_params
    if sum(p <= cap for p in sizes) < 2:
        raise ConfigError(f"max_params: {cap} leaves {sum(p <= cap for p in sizes)} candidate(s) of {pool.name} "
                          f"(sizes {min(sizes)}..{max(sizes)}); allowed: a budget that at least two candidates fit")
    budget_ctx = pool_context(pool) if budgeted else None
    per_seed, per_seed_capped = [], []
    for j, seed in enumerate(seeds):
        candidates = measure_candidates(pool, base, spec, seed, progress, j * n, n * len(seeds))
        whole, under = _replay_seed(seed, candidates, sizes, cap, pool.recipe.epochs, promote_fraction, grace, eta,
                                    budget_fraction, draws, budget_ctx)
        per_seed.append(whole)
        per_seed_capped.append(under)
    return {**_assemble(pool.name, n, seeds, sizes, cap, max_params is None, per_seed, per_seed_capped,
                        promote_fraction, grace, eta, budget_fraction, draws),
            "seconds": time.perf_counter() - start}


def replay_result(result: dict[str, Any], draws: int | None = None, command: str | None = None,
                  budget_ctx: BudgetContext | None = None) -> dict[str, Any]:
    """``result`` (a ``bench search`` JSON) with every strategy replayed again on its recorded
    curves -- no training: the candidates, their curves and the budget's cap are kept, the
    strategies' figures recomputed with this version's replay. ``draws``: the number of
    random orders (default: the one ``result`` used). ``budget_ctx`` (the pool's, see
    :func:`~growsearch.bench.budget_replay.pool_context`): the budgeted search's strategies
    are replayed too; without it, those ``result`` holds are kept as recorded. The returned
    dict records the replay under ``replayed`` (``command``, and the command that measured
    the curves)."""
    per_seed_in = result.get("per_seed") or []
    if not per_seed_in or "curve" not in per_seed_in[0]["candidates"][0]:
        raise ConfigError(f"{result.get('pool', 'result')}: no per-candidate curves recorded; allowed: a "
                          "`growsearch bench search` result with per_seed candidates and their curves")
    n = result["n_candidates"]
    promote_fraction = result.get("promote_fraction", 0.25)
    if max(1, math.ceil(promote_fraction * n)) != result["k"]:
        raise ConfigError(f"k: {result['k']} of {n} candidates is not promote_fraction {promote_fraction}; "
                          "allowed: a result that records the promote_fraction it used")
    draws = result["strategies"]["random_k"]["draws"] if draws is None else draws
    grace, eta = result["asha"]["grace"], result["asha"]["eta"]
    cap = result["budget"]["max_params"]
    per_seed, per_seed_capped = [], []
    for run, run_capped in zip(per_seed_in, result["budget"]["per_seed"], strict=True):
        candidates = [{k: v for k, v in c.items() if k not in ("final_val", "final_test")} for c in run["candidates"]]
        sizes = [c["params"] for c in candidates]
        epochs = max(int(c["curve"][-1]["epoch"]) for c in candidates)
        whole, under = _replay_seed(run["seed"], candidates, sizes, cap, epochs, promote_fraction, grace, eta,
                                    result["budget_fraction"], draws, budget_ctx)
        if under["candidates"] != run_capped["candidates"]:
            raise ConfigError(f"budget: the candidates at or below max_params {cap} differ from the recorded ones "
                              f"on seed {run['seed']}")
        if budget_ctx is None:  # not replayed: the budgeted strategies' recorded figures, if any
            for new, old in ((whole, run), (under, run_capped)):
                new["strategies"].update({n: old["strategies"][n] for n in BUDGETED if n in old["strategies"]})
        per_seed.append(whole)
        per_seed_capped.append(under)
    sizes = [c["params"] for c in per_seed_in[0]["candidates"]]
    replayed = _assemble(result["pool"], n, result["seeds"], sizes, cap, result["budget"]["max_params_default"],
                         per_seed, per_seed_capped, promote_fraction, grace, eta, result["budget_fraction"], draws)
    measured = {k: v for k, v in result.items() if k not in replayed}
    return {**measured, **replayed,
            "replayed": {"command": command or "python -m growsearch.bench.search_efficiency --replay FILE",
                         "curves_measured_by": result.get("replayed", {}).get("curves_measured_by",
                                                                               result.get("command"))}}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m growsearch.bench.search_efficiency --replay FILE.json [--out OUT.json]``:
    replay every strategy on the curves a ``bench search`` result recorded (no training)."""
    import argparse
    import json
    import sys
    from pathlib import Path

    from growsearch.checkpoint import write_json

    parser = argparse.ArgumentParser(prog="python -m growsearch.bench.search_efficiency",
                                     description=main.__doc__)
    parser.add_argument("--replay", type=Path, required=True, help="a `growsearch bench search` JSON result")
    parser.add_argument("--out", type=Path, help="where to write the replayed result (default: --replay itself)")
    parser.add_argument("--draws", type=int, help="random orders per replay (default: the result's own)")
    parser.add_argument("--rescore", action="store_true",
                        help="compute every candidate's surrogate scores again first (a changed surrogate; the "
                             "recorded training curves are kept); implies --budgeted")
    parser.add_argument("--budgeted", action="store_true",
                        help="replay the budgeted search's strategies too (a named pool; minutes); without it "
                             "their recorded figures are kept")
    args = parser.parse_args(argv)
    if args.draws is not None and args.draws < 1:
        raise SystemExit(f"--draws: got {args.draws}; allowed: a positive integer")
    out = args.out or args.replay
    command = "python -m growsearch.bench.search_efficiency " + " ".join(sys.argv[1:] if argv is None else argv)
    try:
        result = json.loads(args.replay.read_text())
        from growsearch.bench.pools import get_pool

        if args.rescore:
            result = rescore_result(result, get_pool(result["pool"]))
        ctx = pool_context(get_pool(result["pool"])) if args.rescore or args.budgeted else None
        result = replay_result(result, args.draws, command, ctx)
    except (OSError, ValueError, KeyError, ConfigError) as exc:  # one line, no traceback
        print(f"error: --replay {args.replay}: {exc}", file=sys.stderr)
        return 2
    write_json(out, result)
    for name, st in result["budget"]["strategies"].items():
        rate = st.get("reach_rate")
        print(f"{name} (max_params {result['budget']['max_params']}): to target "
              f"{st['compute_to_target_vs_train_all']}" + ("" if rate is None else f", reach rate {rate:.3f}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
