"""The budgeted search replayed on recorded curves (growsearch.bench.budget_replay): the real
BudgetedSearch over a pool space and a replay executor."""

import json
from pathlib import Path

import pytest
import torch

from growsearch.bench.budget_replay import (
    BUDGETED,
    BudgetContext,
    PoolSpace,
    ReplayExecutor,
    candidate_key,
    pool_context,
    replay_budgeted,
    run_budget,
)
from growsearch.grow import DEFAULT_INIT, ExpansionPlan
from growsearch.metrics.cost import flops_per_example, training_flops
from growsearch.models.mlp import MLPConfig
from growsearch.search.executors import TrainJob
from growsearch.search.schedulers import NoStopping
from growsearch.search.space import planned_config

ROOT = Path(__file__).parents[1]
N_TRAIN = 10  # examples per epoch of the hand-made pool
BASE = MLPConfig(in_dim=4, out_dim=2, hidden=[4])  # 48 forward FLOPs per example


def _candidate(plan, init, finals, metric_cost=2.0):
    """A hand-made pool candidate: ``finals[e]`` its validation (= test) score after epoch e + 1."""
    p = ExpansionPlan.from_dict(plan)
    with torch.device("meta"):
        model = planned_config(BASE, p).build()
        forward = flops_per_example(model, torch.zeros(1, 4, device="meta"))
    curve = [{"epoch": e + 1, "score": s, "test_score": s, "forward_backward": N_TRAIN * (e + 1),
              "flops": training_flops(forward, N_TRAIN * (e + 1)), "seconds": float(e + 1)}
             for e, s in enumerate(finals)]
    return {"name": candidate_key(p, init), "flops": forward, "params": sum(q.numel() for q in model.parameters()),
            "manifold_metric": -float(forward), "metric_cost": metric_cost, "metric_seconds": 0.5,
            "surrogates": {"manifold": -float(forward), "params": 0.0, "naswot": 0.0, "short_training": 0.0},
            "curve": curve}


def _hand_pool():
    """Two candidates, two epochs: A (width 3, 144 FLOPs -> one epoch 3 x 144 x 10 = 4320) is the
    largest and the worse; B (width 2, 96 FLOPs -> 2880 per epoch) the best."""
    a = _candidate({"width": 3.0}, DEFAULT_INIT, [0.6, 0.7])
    b = _candidate({"width": 2.0}, DEFAULT_INIT, [0.7, 0.9])
    ctx = BudgetContext("mlp", BASE, torch.zeros(1, 4), N_TRAIN,
                        {c["name"]: (ExpansionPlan.from_dict(p).to_dict(), DEFAULT_INIT)
                         for c, p in ((a, {"width": 3.0}), (b, {"width": 2.0}))})
    return [a, b], ctx


def _consumed(run, candidates):
    """What the search's screens and served epochs cost, from the curves alone."""
    by_name = {c["name"]: c for c in candidates}
    screens = sum(training_flops(by_name[n]["flops"], by_name[n]["metric_cost"]) for n in run["screened"])
    return screens + sum(by_name[n]["curve"][e - 1]["flops"] for n, e in run["served"].items())


def test_pool_space_proposes_exactly_the_pool_candidates():
    from growsearch.search.budget import allowed_grid, largest_allowed, mutate

    candidates, ctx = _hand_pool()
    space = PoolSpace.of("mlp", ctx.plans)
    grid = allowed_grid(space, BASE)
    assert sorted(candidate_key(plan, DEFAULT_INIT) for _, plan in grid) == sorted(c["name"] for c in candidates)
    params, plan = largest_allowed(space, BASE, ctx.example)
    assert params == {"candidate": candidates[0]["name"]} and plan.describe() == "w3"
    import numpy as np

    assert mutate(params, space, np.random.default_rng(0)) == {"candidate": candidates[1]["name"]}
    with pytest.raises(ValueError, match="is not its plan"):
        PoolSpace.of("mlp", {"w2/masked": ({"width": 3.0}, DEFAULT_INIT)})


def test_replay_executor_resumes_without_counting_an_epoch_twice():
    candidates, _ = _hand_pool()
    executor = ReplayExecutor(candidates, epochs=2)
    records = []
    plan = {"width": 2.0}
    executor.train([TrainJob("c0", plan, DEFAULT_INIT, until=1)], NoStopping(), None, records.append)
    assert records[-1]["stage"] == "paused" and records[-1]["epochs"] == 1 and executor.spent == 2880
    with pytest.raises(ValueError, match="resume"):  # a fresh start after a pause would count epoch 1 again
        executor.train([TrainJob("c0", plan, DEFAULT_INIT, until=2)], NoStopping(), None, records.append)
    executor.train([TrainJob("c0", plan, DEFAULT_INIT, until=2, resume="candidates/c0")], NoStopping(), None,
                   records.append)
    assert records[-1]["stage"] == "completed" and [h["epoch"] for h in records[-1]["history"]] == [1, 2]
    assert executor.spent == candidates[1]["curve"][-1]["flops"] == 5760
    assert executor.completions == [{"name": "w2/masked", "spent": 5760, "seconds": 2.0, "score": 0.9,
                                     "test_score": 0.9}]


def test_hand_made_pool_has_the_hand_computed_figures():
    """Budget = train-all = 2 x (4320 + 2880) = 14400, surrogate none (no screening), rungs [1, 2]
    (grace 1, eta 2). Bracket 0: share 14400 / 2 = 7200, size min(2, 7200 // sqrt(1440 x 4320)) = 2;
    slot 0 allows 7200 / 2 = 3600: the largest, A (first rung 4320), is refused; the sampler's
    draws of A are the same as it, B (2880) goes in; slot 1 has nothing new. B trains 1 epoch
    (2880) and, promoted, its second (5760): B completes at 5760 = 0.4 of train-all, reaching the
    target. Given 7200 (half of train-all): share 3600, size 1, the same B completes at 5760 and
    is picked: regret 0."""
    candidates, ctx = _hand_pool()
    out = replay_budgeted(candidates, ctx, epochs=2, surrogate="none", seed=0, grace=1, eta=2, target=0.895,
                          regret_budget=7200.0, full_budget=14400.0)
    assert out["compute_to_target"] == 5760 and out["reach_rate"] == 1.0
    assert out["seconds_to_target"] == 2.0
    assert out["picked"] == "w2/masked" and out["picked_within_budget"] == 0.9
    assert out["spent_at_regret_budget"] == 5760
    # a target only A reaches is never reached (A's first rung never fits its slot)
    missed = replay_budgeted(candidates, ctx, epochs=2, surrogate="none", seed=0, grace=1, eta=2, target=0.95,
                             regret_budget=7200.0, full_budget=14400.0)
    assert missed["compute_to_target"] is None and missed["reach_rate"] == 0.0
    # a quarter of train-all (3600) buys no first rung in a slot of 1800: nothing completes
    small = replay_budgeted(candidates, ctx, epochs=2, surrogate="none", seed=0, grace=1, eta=2, target=0.895,
                            regret_budget=3600.0, full_budget=14400.0)
    assert small["picked_within_budget"] is None and small["spent_at_regret_budget"] == 0


@pytest.mark.parametrize("surrogate", ["manifold", "none"])
def test_spend_is_within_the_budget_and_equals_the_curves_consumed(surrogate):
    candidates, ctx = _hand_pool()
    for budget in (7200.0, 14400.0, 30000.0):
        run = run_budget(candidates, ctx, 2, budget, surrogate, seed=1, grace=1, eta=2)
        assert run["summary"]["spent_flops"] == pytest.approx(run["spent"], rel=1e-12)
        assert run["spent"] == pytest.approx(_consumed(run, candidates), rel=1e-12)
        assert 0 < run["spent"] <= budget
        assert bool(run["screened"]) == (surrogate != "none")


def test_committed_pool_replay_accounts_like_the_curves_and_repeats():
    """On a committed pool's recorded curves: the budget's FLOPs per example are the pool's, the
    search spends within its budget exactly what the curves it consumed cost, and the same seed
    gives the same figures."""
    from growsearch.bench.pools import get_pool
    from growsearch.search.budget import _meta_flops

    result = json.loads((ROOT / "docs/results/search-text-gpt.json").read_text())
    run = result["per_seed"][0]
    candidates = [{k: v for k, v in c.items() if k not in ("final_val", "final_test")} for c in run["candidates"]]
    ctx = pool_context(get_pool("text-gpt"))
    for c in candidates:
        plan, _ = ctx.plans[c["name"]]
        assert _meta_flops(ctx.base, ExpansionPlan.from_dict(plan), ctx.example) == c["flops"]
        for point in c["curve"]:
            assert point["flops"] == training_flops(c["flops"], point["forward_backward"])
    epochs = max(c["curve"][-1]["epoch"] for c in candidates)
    budget = run["budget_compute"]
    small = run_budget(candidates, ctx, epochs, budget, "manifold", run["seed"], 2, 3)
    assert 0 < small["spent"] <= budget
    assert small["summary"]["spent_flops"] == pytest.approx(_consumed(small, candidates), rel=1e-12)
    figures = replay_budgeted(candidates, ctx, epochs, "manifold", run["seed"], 2, 3, run["target"], budget,
                              run["train_all_compute"])
    again = replay_budgeted(candidates, ctx, epochs, "manifold", run["seed"], 2, 3, run["target"], budget,
                            run["train_all_compute"])
    assert figures == again and figures["spent_at_regret_budget"] == small["spent"]
    assert figures["total_compute"] <= run["train_all_compute"]


def test_committed_results_hold_the_budgeted_strategies():
    from growsearch.bench.table import search_table

    for pool in ("digits-mlp", "mnist1d-mlp", "mnist1d-cnn", "text-gpt"):
        result = json.loads((ROOT / f"docs/results/search-{pool}.json").read_text())
        for view in (result, result["budget"]):
            assert set(BUDGETED) <= set(view["strategies"]), pool
        table = "\n".join(search_table(result))
        assert all(f"| {name} |" in table for name in BUDGETED), pool
