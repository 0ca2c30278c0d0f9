import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from growsearch.bench import stats
from growsearch.bench.pools import POOLS
from growsearch.cli import main
from growsearch.grow import DEFAULT_INIT, PRESERVING_INITS


def test_quick_pool_end_to_end(tmp_path):
    out = tmp_path / "quick.json"
    assert main(["bench", "predictors", "--pool", "digits-mlp", "--quick", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["pool"] == "digits-mlp-quick" and result["tuning_pool"] is True
    assert len(result["candidates"]) == 3 * 2  # 3 plans x (default init, random)
    for c in result["candidates"]:
        assert {"plan", "params", "flops", "predictors", "gain_mean", "gain_std",
                "full_training_cost"} <= set(c)
        assert len(c["scores"]) == 2 and c["full_training_cost"] > 0
        if c["init"] == DEFAULT_INIT:
            assert c["max_abs_output_diff"] <= 1e-5
    for name in ("manifold_metric", "params", "flops", "snip", "naswot", "short_training"):
        entry = result["predictors"][name]
        assert -1 <= entry["kendall"] <= 1 and len(entry["kendall_ci"]) == 2
        assert "kendall_equal_params" in entry and "kendall_partial_params" in entry
    assert math.isnan(result["predictors"]["params"]["kendall_partial_params"])  # params explains itself
    assert set(result["estimator_cost_ratios"]) == {"simplex", "simplex_scaled", "function", "below", "function_below",
                                                    "ray", "llc", "binding_simplex", "binding_random",
                                                    "binding_function"}
    # every candidate records whether the default estimator's loss constraint bound, and the
    # data-free weight-norm formula is a predictor beside the others (with tau against it)
    assert all(c["manifold"]["bound"] is True for c in result["candidates"])
    assert "weight_norm_volume" in result["predictors"]
    assert result["predictors"]["weight_norm_volume"]["kendall_vs_weight_norm"] == pytest.approx(1.0)
    # --rescore keeps the trained scores and computes the same predictors again
    again = tmp_path / "again.json"
    assert main(["bench", "predictors", "--pool", "digits-mlp", "--quick", "--rescore", str(out),
                 "--out", str(again)]) == 0
    rescored = json.loads(again.read_text())
    assert rescored["training_reused_from"] and rescored["base"]["scores"] == result["base"]["scores"]
    for a, b in zip(result["candidates"], rescored["candidates"], strict=True):
        assert a["scores"] == b["scores"] and a["predictors"] == b["predictors"]
    # results of another pool (or another version of it) are refused, nothing written
    other = json.loads(out.read_text())
    other["seeds"] = [5, 6]
    (tmp_path / "other.json").write_text(json.dumps(other))
    assert main(["bench", "predictors", "--pool", "digits-mlp", "--quick", "--rescore", str(tmp_path / "other.json"),
                 "--out", str(tmp_path / "no.json")]) == 2
    assert not (tmp_path / "no.json").exists()
    # params and flops of MLPs rank identically
    assert result["predictors"]["params"]["kendall"] == pytest.approx(result["predictors"]["flops"]["kendall"])
    assert result["metric_cost_ratio"] > 0


def test_score_json(tmp_path, mlp_base, capsys):
    assert main(["score", str(mlp_base), "--width", "2", "--json", "--proxies", "all"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert math.isfinite(scores["manifold_metric"])
    assert scores["cost"]["forward_backward"] > 0 and scores["cost"]["seconds"] > 0
    for name in ("params", "flops", "grad_norm", "snip", "grasp", "fisher", "synflow", "jacob_cov",
                 "naswot", "short_training"):
        assert name in scores


def test_unknown_pool(tmp_path, capsys):
    assert main(["bench", "predictors", "--pool", "imagenet", "--out", str(tmp_path / "x.json")]) == 2
    assert "--pool: got 'imagenet'" in capsys.readouterr().err


def _kind(plan):
    if "widths" in plan and not any(k in plan for k in ("depth", "insert_at")):
        return "per-layer"
    wide = any(k in plan for k in ("width", "widths", "d_model", "n_heads", "mlp_hidden"))
    deep = any(k in plan for k in ("depth", "insert_at"))
    if wide and not deep and any(k in plan for k in ("d_model", "n_heads", "mlp_hidden")):
        return "per-layer"
    return {(True, True): "mixed", (True, False): "width", (False, True): "depth"}[(wide, deep)]


def test_pools_ask_the_budget_question():
    """Every pool: >= 4 groups of equal parameter count (within 5%, >= 10% apart), each
    with >= 3 kinds of plan; the default init and random; digits only for tuning."""
    from growsearch.data import load_dataset
    from growsearch.grow import DEFAULT_INIT, ExpansionPlan
    from growsearch.models import count_params
    from growsearch.pretrain import default_config
    from growsearch.search.space import planned_config

    tuning = [p for p in POOLS.values() if p.tuning]
    assert tuning and all(p.dataset == "digits" for p in tuning)
    assert not any(p.dataset == "digits" for p in POOLS.values() if not p.tuning)
    for pool in POOLS.values():
        assert pool.inits == (DEFAULT_INIT, "random") and len(pool.seeds) >= 2
        assert 16 <= len(pool.candidates()) <= 32
        cfg = default_config(pool.family, load_dataset(pool.dataset))
        sizes = [count_params(planned_config(cfg, ExpansionPlan.from_dict(p)).build()) for p in pool.plans]
        groups = stats.equal_param_groups(sizes)
        assert sum(len(g) for g in groups) == len(pool.plans), (pool.name, sizes)  # every plan is in a group
        assert len(groups) >= 4, pool.name
        for g in groups:
            assert max(sizes[i] for i in g) <= 1.05 * min(sizes[i] for i in g), (pool.name, g)
            assert len({_kind(pool.plans[i]) for i in g}) >= 3, (pool.name, [pool.plans[i] for i in g])
        lows = sorted(min(sizes[i] for i in g) for g in groups)
        highs = sorted(max(sizes[i] for i in g) for g in groups)
        assert all(lo >= 1.1 * hi for lo, hi in zip(lows[1:], highs[:-1], strict=True)), pool.name


def test_partial_kendall_known_value():
    # tau(pred, target) = tau(pred, control) = 2/3, tau(target, control) = 1/3:
    # (2/3 - 2/9) / sqrt((1 - 4/9)(1 - 1/9)) = 4 / sqrt(40)
    assert stats.partial_kendall([1, 2, 3, 4], [1, 3, 2, 4], [1, 2, 4, 3]) == pytest.approx(4 / math.sqrt(40))
    assert stats.partial_kendall([5, 1, 3, 2], [5, 1, 3, 2], [1, 2, 3, 4]) == pytest.approx(1.0)
    assert math.isnan(stats.partial_kendall([1, 2, 3], [3, 1, 2], [10, 20, 30]))  # pred is the control


def test_equal_param_groups_are_fixed_log_bins():
    # bins [1.1^b, 1.1^(b+1)): 100 and 105 share bin 48, 1000 and 1050 bin 72, 1090 is in 73
    groups = stats.equal_param_groups([100, 105, 300, 1000, 1050, 1090])
    assert groups == [[0, 1], [3, 4]]
    # a candidate's group does not depend on which other candidates exist
    rng = np.random.default_rng(0)
    params = [int(p) for p in rng.integers(1000, 5000, 40)]
    for extra in (1049, 2200, 4999):
        before = {frozenset(g) for g in stats.equal_param_groups(params)}
        after = {frozenset(i for i in g if i < len(params)) for g in stats.equal_param_groups([*params, extra])}
        assert before == {g for g in after if len(g) > 1}
    assert all(stats.param_bin(p) == stats.param_bin(q) for g in stats.equal_param_groups(params)
               for p, q in [(params[g[0]], params[i]) for i in g])


def test_within_group_tau_is_scipy_tau_b():
    from scipy.stats import kendalltau

    rng = np.random.default_rng(1)
    pred = [float(v) for v in rng.integers(0, 4, 9)]  # ties in both variables
    target = [float(v) for v in rng.integers(0, 3, 9)]
    tau, pairs = stats.within_group_kendall(pred, target, [list(range(9))])
    assert pairs == 36 and tau == pytest.approx(kendalltau(pred, target, variant="b").statistic, abs=1e-12)
    assert stats.kendall(pred, target) == pytest.approx(tau, abs=1e-12)
    # pooled over two groups: 3 concordant, 0 discordant, 1 tie in pred among 4 pairs
    tau, pairs = stats.within_group_kendall([1, 2, 0, 3, 3, 1], [1, 2, 5, 3, 2, 1], [[0, 1], [3, 4, 5]])
    assert pairs == 4 and tau == pytest.approx((3 - 0) / math.sqrt((4 - 1) * (4 - 0)))


def test_infinities_rank_at_the_ends():
    assert stats.kendall([1.0, math.inf, 2.0, -math.inf], [1.0, 3.0, 2.0, 0.0]) == pytest.approx(1.0)
    assert stats.kendall([math.nan, 5.0, math.inf], [0.0, 1.0, 2.0]) == pytest.approx(1.0)


def test_growth_benchmark_quick(tmp_path):
    out = tmp_path / "growth.json"
    assert main(["bench", "growth", "--pool", "mnist1d-mlp", "--quick", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert len(result["plans"]) == 3 and result["default_init"] == DEFAULT_INIT
    row = result["plans"][0]
    assert set(row["arms"]) == {"random", *PRESERVING_INITS}
    assert len(row["scratch"]["curve"]) == 1  # one epoch in the quick pool
    # one epoch of MNIST-1D's 3600 training examples (4000 less the validation split), 3x forward FLOPs
    from growsearch.grow import ExpansionPlan
    from growsearch.metrics.cost import flops_per_example
    from growsearch.models import config_from_spec
    from growsearch.search.space import planned_config

    target = planned_config(config_from_spec(result["base"]["spec"]), ExpansionPlan.from_dict(row["plan"])).build()
    assert row["training_flops_per_example"] == 3 * flops_per_example(target, torch.zeros(1, 40))
    assert row["scratch"]["forward_backward"] == 3600
    assert row["scratch"]["compute"] == 3600 * row["training_flops_per_example"]
    for init, arm in row["arms"].items():
        assert len(arm["finals"]) == 2 and arm["final_mean"] == pytest.approx(sum(arm["finals"]) / 2)
        assert arm["ratio_to_scratch"] is None or 0 < arm["ratio_to_scratch"] <= 1
        if init != "random":
            assert arm["max_abs_output_diff"] <= 1e-5
            lo, hi = arm["vs_random"]["ci95"]
            assert lo <= arm["vs_random"]["mean"] <= hi
    copies = [r["arms"]["split_positive"]["symmetry"]["symmetric_fraction"] for r in result["plans"]]
    copies = [f for f in copies if f is not None]  # depth-only plans duplicate no unit
    assert copies and min(copies) > 0.5  # copies stay copies
    assert result["base"]["pretrain_compute_examples"] == 2 * 3600
    assert result["best_preserving_init"] == max(  # chosen by validation gain
        (i for i in row["arms"] if i != "random"), key=lambda i: result["summary"][i]["val_mean_gain"])


def test_search_efficiency_quick(tmp_path):
    out = tmp_path / "search.json"
    assert main(["bench", "search", "--pool", "digits-mlp", "--quick", "--seeds", "0", "1", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    s = result["strategies"]
    surrogates = {f"surrogate_{n}_and_early_stopping" for n in ("manifold", "params", "naswot", "short_training")}
    assert set(s) == {"train_all", "random_k", "early_stopping_only", "random_and_early_stopping", *surrogates}
    assert [r["seed"] for r in result["per_seed"]] == [0, 1]
    # the second replay, under a parameter budget: by default the upper edge of the second-largest
    # equal-parameter group (this small pool has one group, so every candidate fits)
    budget = result["budget"]
    sizes = [c["params"] for c in result["per_seed"][0]["candidates"]]
    groups = stats.equal_param_groups(sizes)
    assert budget["max_params"] == (max(sizes[i] for i in groups[-2]) if len(groups) > 1 else max(sizes))
    assert set(budget["strategies"]) == set(s)
    for run in result["per_seed"]:
        # train-all pays every candidate's full training in FLOPs: 1 epoch of the 1293 digits training
        # images (1437 less the validation split) at 3x each candidate's forward FLOPs
        expected = sum(3 * c["flops"] * 1293 for c in run["candidates"])
        assert run["strategies"]["train_all"]["total_compute"] == pytest.approx(expected, rel=1e-12)
        ours = run["strategies"]["surrogate_manifold_and_early_stopping"]
        assert len(ours["promoted"]) == result["k"] and ours["total_compute"] >= ours["screening_compute"] > 0
    assert s["train_all"]["compute_to_target"] is not None and s["train_all"]["regret_at_budget"] >= 0
    low, high = result["spread"]["train_all"]["total_compute"]
    assert low <= s["train_all"]["total_compute"] <= high
    # a seed reproduces exactly, alone or among others (seconds aside)
    again = tmp_path / "again.json"
    cap = sorted(set(sizes))[-2]  # a budget that binds: the biggest candidates do not fit
    assert main(["bench", "search", "--pool", "digits-mlp", "--quick", "--seeds", "1", "--max-params", str(cap),
                 "--out", str(again)]) == 0
    rerun = json.loads(again.read_text())
    alone = rerun["per_seed"][0]["strategies"]
    for name, st in result["per_seed"][1]["strategies"].items():
        for fig in ("compute_to_target", "total_compute", "regret_at_budget", "promoted"):
            assert st.get(fig) == alone[name].get(fig), (name, fig)
    budget = rerun["budget"]
    by_name = {c["name"]: c["params"] for c in rerun["per_seed"][0]["candidates"]}
    fitting = sorted((p for p in by_name.values() if p <= cap), reverse=True)
    assert budget["max_params"] == cap and not budget["max_params_default"]
    assert budget["per_seed"][0]["candidates"] == [n for n, p in by_name.items() if p <= cap]
    params_pick = budget["per_seed"][0]["strategies"]["surrogate_params_and_early_stopping"]
    # params costs nothing to screen and promotes the k biggest candidates that fit
    assert params_pick["screening_compute"] == 0
    assert sorted((by_name[n] for n in params_pick["promoted"]), reverse=True) == fitting[:budget["k"]]
    assert budget["n_candidates"] == len(fitting) < len(by_name)
    # a changed surrogate is scored again on the recorded candidates, curves kept, then replayed
    from growsearch.bench.pools import get_pool
    from growsearch.bench.search_efficiency import replay_result, rescore_result

    damaged = json.loads(out.read_text())
    for run in damaged["per_seed"]:
        for c in run["candidates"]:
            c["surrogates"]["manifold"], c["manifold_metric"] = 0.0, 0.0
    rescored = replay_result(rescore_result(damaged, get_pool("digits-mlp", quick=True)))
    for a, b in zip(result["per_seed"], rescored["per_seed"], strict=True):
        assert [c["surrogates"] for c in a["candidates"]] == [c["surrogates"] for c in b["candidates"]]
        assert [c["curve"] for c in a["candidates"]] == [c["curve"] for c in b["candidates"]]
        assert all(c["manifold_bound"] is True for c in b["candidates"])
        assert a["strategies"]["surrogate_manifold_and_early_stopping"]["promoted"] == \
            b["strategies"]["surrogate_manifold_and_early_stopping"]["promoted"]


def test_expected_cost_to_first_hit_matches_every_order():
    from itertools import permutations

    from growsearch.bench.search_efficiency import expected_cost_to_first_hit

    costs = [3.0, 5.0, 1.0, 8.0, 2.0, 13.0]
    for hits in ([False, True, False, False, True, False], [False, False, False, False, False, True],
                 [True] * 6, [False] * 6):
        paid = []
        for order in permutations(range(len(costs))):
            total, found = 0.0, None
            for i in order:
                total += costs[i]
                if hits[i]:
                    found = total
                    break
            paid.append(found)
        expected = expected_cost_to_first_hit(costs, hits)
        if not any(hits):
            assert expected is None and all(p is None for p in paid)
        else:
            assert expected == pytest.approx(sum(paid) / len(paid), rel=1e-12)


def test_random_order_counts_the_draws_that_miss():
    from growsearch.bench.search_efficiency import SURROGATES, replay_strategies

    # 8 candidates, only the last reaches the target; each costs 1 FLOP-unit and 1 second
    candidates = [{"name": str(i), "flops": 1, "surrogates": dict.fromkeys(SURROGATES, float(i)),
                   "screening_flops": dict.fromkeys(SURROGATES, 0.0), "metric_seconds": 0.0,
                   "curve": [{"epoch": 1, "score": 0.5, "test_score": 0.9 if i == 7 else 0.5, "flops": 1.0,
                              "seconds": 1.0}]} for i in range(8)]
    result = replay_strategies(candidates, epochs=1, promote_fraction=0.25, draws=200)
    rk = result["strategies"]["random_k"]
    # the target is found after (8 + 1) / 2 = 4.5 trainings in expectation, more than k = 2
    assert rk["compute_to_target"] == pytest.approx(4.5) and rk["seconds_to_target"] == pytest.approx(4.5)
    assert 0 < rk["reach_rate_within_k"] < 0.5
    # every surrogate ranks the last candidate first: it is promoted and reaches the target at once
    for name in SURROGATES:
        st = result["strategies"][f"surrogate_{name}_and_early_stopping"]
        assert st["promoted"] == ["7", "6"] and st["compute_to_target"] == pytest.approx(1.0)
    # random pruning: 2 of 8 drawn, so about a quarter of the draws contain the only hit
    assert 0.1 < result["strategies"]["random_and_early_stopping"]["reach_rate_within_k"] < 0.4
    assert result["strategies"]["random_and_early_stopping"]["compute_to_target"] is None


def test_user_pool_file(tmp_path, mlp_base):
    """A user pool: a checkpoint base, two plans, one init, two seeds; the table has every
    predictor and its partial tau."""
    pool = tmp_path / "my_pool.yaml"
    pool.write_text(f"checkpoint: {mlp_base}\ndataset: mnist1d\n"
                    "plans: [{width: 2}, {depth: 1}, {widths: [48, 32]}]\ninits: [random]\n"
                    "recipe: {epochs: 1, batch_size: 128, lr: 0.002}\nseeds: [0, 1]\n")
    out = tmp_path / "mine.json"
    assert main(["bench", "predictors", "--pool", str(pool), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["pool"] == "my_pool" and result["tuning_pool"] is False
    assert [c["name"] for c in result["candidates"]] == ["w2/random", "d1/random", "widths=[48,32]/random"]
    assert all(len(c["scores"]) == 2 for c in result["candidates"])
    assert "kendall_partial_params" in result["predictors"]["manifold_metric"]
    # a base that does not take the dataset: one line, exit 2, nothing written
    pool.write_text(f"checkpoint: {mlp_base}\ndataset: digits\nplans: [{{width: 2}}]\n")
    assert main(["bench", "predictors", "--pool", str(pool), "--out", str(tmp_path / "no.json")]) == 2
    assert not (tmp_path / "no.json").exists()


@pytest.mark.parametrize("text, message", [
    ("dataset: digits\nplans: [{width: 2}]\n", "pool: give exactly one of checkpoint"),
    ("family: mlp\ndataset: digits\nplans: [{wide: 2}]\n", "pool.plans[0].wide: unknown key"),
    ("family: mlp\ndataset: digits\nplans: [{width: 2}, {widths: [8, 8]}]\n", "pool.plans[1]: plan.widths[0]: got 8"),
    ("family: mlp\ndataset: digits\nplans: [{width: 2}]\ninits: [lemon]\n", "pool.inits[0]: got 'lemon'"),
    ("family: mlp\ndataset: digits\nplans: [{width: 2}]\nseeds: []\n", "pool.seeds must list"),
    ("family: mlp\ndataset: nope\nplans: [{width: 2}]\n", "dataset: got 'nope'"),
    ("family: mlp\ndataset: digits\nplans: [{width: 2}]\nrecipe: {epochs: x}\n", "pool.recipe.epochs: got 'x'"),
    ("checkpoint: /no/such/dir\ndataset: digits\nplans: [{width: 2}]\n", "checkpoint: /no/such/dir does not exist"),
    ("family: mlp\ndataset: digits\nplans: [{width: 2}\n", "is not valid YAML"),
])
def test_bad_pool_files(tmp_path, capsys, text, message):
    pool = tmp_path / "bad.yaml"
    pool.write_text(text)
    out = tmp_path / "x.json"
    assert main(["bench", "predictors", "--pool", str(pool), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and not out.exists()


def test_search_benchmark_refuses_a_budget_no_two_candidates_fit(tmp_path, capsys):
    out = tmp_path / "search.json"
    assert main(["bench", "search", "--pool", "digits-mlp", "--quick", "--max-params", "10", "--out", str(out)]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and "max_params: 10" in errors[0] and "allowed" in errors[0]
    assert "Traceback" not in errors[0]
    assert not out.exists()


@pytest.mark.parametrize("seeds", [["1"], ["0", "0"], ["-1", "2"]])
def test_growth_benchmark_refuses_seeds_that_cannot_pair(tmp_path, capsys, seeds):
    out = tmp_path / "growth.json"
    assert main(["bench", "growth", "--pool", "digits-mlp", "--quick", "--seeds", *seeds, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("growsearch: error: --seeds:") and "allowed" in err[0]
    assert not out.exists()


def _recorded(costs, hit, early=None, epochs=1, params=None):
    """A synthetic pool of recorded curves, candidate i costing ``costs[i]`` FLOPs (and seconds) per
    epoch; only ``hit`` reaches the target; ``early[i]``: its validation score before the last epoch."""
    from growsearch.bench.search_efficiency import SURROGATES

    out = []
    for i, cost in enumerate(costs):
        curve = [{"epoch": e, "score": 0.9 if e == epochs and i == hit else (early or [0.5] * len(costs))[i],
                  "test_score": 0.9 if i == hit and e == epochs else 0.5, "flops": cost * e, "seconds": cost * e}
                 for e in range(1, epochs + 1)]
        size = cost if params is None else params[i]
        out.append({"name": str(i), "flops": cost, "params": size,
                    "surrogates": {**dict.fromkeys(SURROGATES, float(-i)), "params": size},
                    "screening_flops": dict.fromkeys(SURROGATES, 0.0), "metric_seconds": 0.0, "curve": curve})
    return out


def _paid_until(order, costs, hit):
    paid = 0.0
    for i in order:
        paid += costs[i]
        if i == hit:
            return paid
    return None


def test_train_all_is_averaged_over_random_orders_not_the_pools_ascending_order():
    from growsearch.bench.search_efficiency import random_orders, replay_strategies

    # ascending size, the largest (last) is the only hit: in the proposal order train-all pays for everything
    costs = [1.0, 2.0, 3.0, 4.0, 10.0]
    result = replay_strategies(_recorded(costs, hit=4), epochs=1, draws=300, seed=7)
    st = result["strategies"]["train_all"]
    orders = random_orders(len(costs), 300, 7)
    assert len(orders) == 300 and all(sorted(o) == list(range(5)) for o in orders)
    expected = sum(_paid_until(o, costs, 4) for o in orders) / len(orders)
    assert st["compute_to_target"] == pytest.approx(expected, rel=1e-12)
    assert st["compute_to_target"] < sum(costs) - 1  # the fixed order's figure was sum(costs)
    # exact expectation over every order: misses / (hits + 1) + the hit's cost = 5 + 10
    assert st["compute_to_target"] == pytest.approx(15.0, rel=0.1)
    assert st["reach_rate"] == 1.0 and st["orders"] == 300 and st["total_compute"] == pytest.approx(sum(costs))
    assert st["compute_to_target_vs_train_all"] == pytest.approx(expected / sum(costs))


def test_early_stopping_alone_is_averaged_over_the_same_orders_with_its_reach_rate():
    from growsearch.bench.search_efficiency import random_orders, replay_strategies

    # 3 epochs, rungs at 1 and 2 (grace 1, eta 2); the hit (candidate 2, last in the proposal order)
    # looks worst at the rungs, so ASHA stops it whenever an earlier training recorded a rung score:
    # it reaches the target exactly in the orders that train it first
    costs = [1.0, 1.0, 4.0]
    candidates = _recorded(costs, hit=2, early=[0.8, 0.7, 0.1], epochs=3)
    result = replay_strategies(candidates, epochs=3, grace=1, eta=2, draws=200, seed=3)
    es = result["strategies"]["early_stopping_only"]
    orders = random_orders(3, 200, 3)
    first = sum(o[0] == 2 for o in orders) / len(orders)
    assert 0 < first < 1 and es["reach_rate"] == pytest.approx(first, rel=1e-12)
    assert es["compute_to_target"] is None  # some orders never reach it
    assert es["compute_to_target_when_reached"] == pytest.approx(3 * 4.0)  # trained first, fully
    assert es["compute_to_target_when_reached_vs_train_all"] == pytest.approx(12.0 / 18.0)
    # random pruning + ES draws the first k of the very same orders
    pruned = result["strategies"]["random_and_early_stopping"]
    k = result["k"]
    assert pruned["reach_rate"] == pytest.approx(sum(o[0] == 2 for o in orders) / len(orders), rel=1e-12)
    assert k == 1 and pruned["reach_rate_within_k"] == pruned["reach_rate"]


def test_surrogate_ties_are_broken_by_the_random_orders():
    from growsearch.bench.search_efficiency import random_orders, replay_strategies

    # params ties the two biggest (an expansion with two inits); k = 1; the hit is the second of the
    # pair in proposal order, so "ties in proposal order" never promoted it
    candidates = _recorded([1.0, 1.0, 1.0, 1.0], hit=3, params=[10, 10, 20, 20])
    result = replay_strategies(candidates, epochs=1, promote_fraction=0.25, draws=200, seed=5)
    st = result["strategies"]["surrogate_params_and_early_stopping"]
    orders = random_orders(4, 200, 5)
    before = sum(o.index(3) < o.index(2) for o in orders) / len(orders)
    assert 0 < before < 1 and st["reach_rate"] == pytest.approx(before, rel=1e-12)
    assert st["promoted_sets"] == 2 and st["orders_replayed"] == 2 and st["compute_to_target"] is None
    # a surrogate without ties is replayed once: the orders do not matter to it
    manifold = result["strategies"]["surrogate_manifold_and_early_stopping"]
    assert manifold["orders_replayed"] == 1 and manifold["promoted"] == ["0"] and manifold["reach_rate"] == 0.0


def test_replay_result_recomputes_the_committed_curves(tmp_path):
    from growsearch.bench.search_efficiency import main as replay_main
    from growsearch.bench.search_efficiency import random_orders

    source = json.loads((Path(__file__).parents[1] / "docs/results/search-text-gpt.json").read_text())
    path = tmp_path / "in.json"
    path.write_text(json.dumps(source))
    out = tmp_path / "out.json"
    assert replay_main(["--replay", str(path), "--out", str(out), "--draws", "20"]) == 0
    replayed = json.loads(out.read_text())
    assert "--replay" in replayed["replayed"]["command"] and replayed["replayed"]["curves_measured_by"]
    assert replayed["budget"]["max_params"] == source["budget"]["max_params"]
    for old, new in zip(source["per_seed"], replayed["per_seed"], strict=True):
        assert [c["curve"] for c in old["candidates"]] == [c["curve"] for c in new["candidates"]]
        costs = [c["curve"][-1]["flops"] for c in new["candidates"]]
        hits = [c["curve"][-1]["test_score"] >= new["target"] for c in new["candidates"]]
        paid = []
        for order in random_orders(len(costs), 20, new["seed"]):
            total = 0.0
            for i in order:
                total += costs[i]
                if hits[i]:
                    break
            paid.append(total)
        assert new["strategies"]["train_all"]["compute_to_target"] == pytest.approx(sum(paid) / 20, rel=1e-12)
    assert replayed["strategies"]["early_stopping_only"]["orders"] == 20
    # the table says which figures are averaged over the orders, with their reach rate
    from growsearch.bench.table import search_table

    table = "\n".join(search_table(replayed))
    row = next(line for line in table.splitlines() if line.startswith("| early_stopping_only"))
    assert "mean over 20 random orders; reached in" in row
    manifold = next(line for line in table.splitlines() if line.startswith("| surrogate_manifold"))
    assert "random orders" not in manifold  # no ties: one order, as before
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**source, "per_seed": [{"candidates": [{"name": "x"}]}]}))
    assert replay_main(["--replay", str(bad)]) == 2


def test_loss_pool_intervals_print_min_first():
    from growsearch.bench.table import headline_table

    root = Path(__file__).parents[1] / "docs/results"
    for name in ("headline-text-gpt.json", "headline-mnist1d-mlp.json"):
        result = json.loads((root / name).read_text())
        intervals = re.findall(r"\[(-?[0-9.]+), (-?[0-9.]+)\]", "\n".join(headline_table(result)[3:]))
        assert intervals
        for lo, hi in intervals:
            assert float(lo) <= float(hi), (name, lo, hi)
