import json
import math

import pytest

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
        assert "kendall_equal_params" in entry
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


def test_pools_follow_the_protocol():
    tuning = [p for p in POOLS.values() if p.tuning]
    assert len(tuning) == 1
    for pool in POOLS.values():
        kinds = {("w" if any(k in plan for k in ("width", "widths", "d_model", "n_heads", "mlp_hidden")) else "")
                 + ("d" if any(k in plan for k in ("depth", "insert_at")) else "") for plan in pool.plans}
        assert kinds == {"w", "d", "wd"}, pool.name
        assert 16 <= len(pool.candidates()) <= 30 and len(pool.seeds) >= 2
        assert {DEFAULT_INIT, "random"} <= set(pool.inits)


def test_within_group_concordance():
    groups = stats.equal_param_groups([100, 105, 300, 1000, 1050, 1090])
    assert groups == [[0, 1], [3, 4, 5]]
    tau, pairs = stats.within_group_kendall([1, 2, 0, 3, 2, 1], [1, 2, 5, 3, 2, 1], groups)
    assert pairs == 4 and tau == 1.0
    tau, _ = stats.within_group_kendall([2, 1, 0, 1, 2, 3], [1, 2, 5, 3, 2, 1], groups)
    assert tau == -1.0


def test_growth_benchmark_quick(tmp_path):
    out = tmp_path / "growth.json"
    assert main(["bench", "growth", "--pool", "mnist1d-mlp", "--quick", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert len(result["plans"]) == 3 and result["default_init"] == DEFAULT_INIT
    row = result["plans"][0]
    assert set(row["arms"]) == {"random", *PRESERVING_INITS}
    assert len(row["scratch"]["curve"]) == 1  # one epoch in the quick pool
    assert row["scratch"]["forward_backward"] == 4000  # one epoch of MNIST-1D's 4000 training examples
    assert row["scratch"]["compute"] == 4000 * row["training_flops_per_example"]
    for init, arm in row["arms"].items():
        assert len(arm["finals"]) == 2 and arm["final_mean"] == pytest.approx(sum(arm["finals"]) / 2)
        assert arm["ratio_to_scratch"] is None or 0 < arm["ratio_to_scratch"] <= 1
        if init != "random":
            assert arm["max_abs_output_diff"] <= 1e-5
            lo, hi = arm["vs_random"]["ci95"]
            assert lo <= arm["vs_random"]["mean"] <= hi
    assert row["arms"]["split_positive"]["symmetry"]["symmetric_fraction"] > 0.5  # copies stay copies
    assert result["base"]["pretrain_compute_examples"] == 2 * 4000


def test_search_efficiency_quick(tmp_path):
    out = tmp_path / "search.json"
    assert main(["bench", "search", "--pool", "digits-mlp", "--quick", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    s = result["strategies"]
    assert set(s) == {"train_all", "random_k", "early_stopping_only", "surrogate_and_early_stopping"}
    n = len(result["candidates"])
    # train-all pays every candidate's full training: 1 epoch of 1437 digits images each
    assert s["train_all"]["total_compute"] == n * 1437
    assert s["train_all"]["compute_to_target"] is not None and s["train_all"]["regret_at_budget"] >= 0
    ours = s["surrogate_and_early_stopping"]
    assert len(ours["promoted"]) == result["k"] and ours["total_compute"] >= ours["screening_compute"] > 0
