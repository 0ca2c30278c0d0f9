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
        assert "kendall_equal_params" in entry and "kendall_partial_params" in entry
    assert math.isnan(result["predictors"]["params"]["kendall_partial_params"])  # params explains itself
    assert set(result["estimator_cost_ratios"]) == {"simplex", "simplex_scaled", "function", "below", "function_below",
                                                    "ray", "llc"}
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
        assert sum(len(g) for g in groups) == len(pool.plans), pool.name  # every plan is in a group
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
    assert set(s) == {"train_all", "random_k", "early_stopping_only", "random_and_early_stopping",
                      *(f"surrogate_{n}_and_early_stopping"
                        for n in ("manifold", "params", "naswot", "short_training"))}
    n = len(result["candidates"])
    # train-all pays every candidate's full training: 1 epoch of 1437 digits images each
    assert s["train_all"]["total_compute"] == n * 1437
    assert s["train_all"]["compute_to_target"] is not None and s["train_all"]["regret_at_budget"] >= 0
    ours = s["surrogate_manifold_and_early_stopping"]
    assert len(ours["promoted"]) == result["k"] and ours["total_compute"] >= ours["screening_compute"] > 0
    assert s["surrogate_params_and_early_stopping"]["screening_compute"] == 0
    # params promotes the k biggest candidates
    by_size = sorted(result["candidates"], key=lambda c: -c["params"])
    assert {c["params"] for c in by_size[:result["k"]]} == {
        next(c["params"] for c in result["candidates"] if c["name"] == name)
        for name in s["surrogate_params_and_early_stopping"]["promoted"]}


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
