"""The headline benchmark: curve accounting against hand-computed numbers, the JSON
contract, compute sums of a real (tiny) run, and determinism per seed; growsearch given a
budget (issue 21): one run per budget within it, the ablations, the goals, and older
results (without budgeted arms) still rendered."""

import json
from pathlib import Path

import pytest
import torch

from growsearch.bench.headline import (
    BUDGET_ARMS,
    BUDGETED,
    BUDGETS,
    STRATEGIES,
    anytime_curve,
    first_reach,
    goals,
    goals_budgeted,
    grid,
    largest_plan,
    make_setting,
    mean_curve,
    run_headline_benchmark,
    run_seed,
    score_at,
    shifted,
    summarize,
)
from growsearch.bench.pools import get_pool
from growsearch.bench.table import headline_figure, headline_table, render
from growsearch.cli import main
from growsearch.data import load_dataset
from growsearch.grow import ExpansionPlan
from growsearch.metrics.cost import flops_per_example
from growsearch.models import count_params
from growsearch.pretrain import default_config
from growsearch.search.space import load_space, planned_config


def _pt(compute, score, val=None):
    return {"compute": compute, "score": score, "val": score if val is None else val, "model": f"m{compute}"}


def test_anytime_curve_keeps_the_best_model_by_validation():
    events = [{"stage": "screening", "compute": 100.0, "model": None},
              {"stage": "training", "compute": 50.0, "model": "a@1", "val": 0.5, "test": 0.6},
              {"stage": "training", "compute": 50.0, "model": "b@1", "val": 0.4, "test": 0.9},  # better test, worse val
              {"stage": "training", "compute": 100.0, "model": "a@2", "val": 0.7, "test": 0.65}]
    base = {"compute": 0.0, "score": 0.55, "val": 0.45, "model": "base"}
    curve = anytime_curve(events, base)
    assert [(p["compute"], p["score"], p["model"]) for p in curve] == [
        (0.0, 0.55, "base"), (150.0, 0.6, "a@1"), (200.0, 0.6, "a@1"), (300.0, 0.65, "a@2")]
    assert score_at(curve, 149.0) == 0.55 and score_at(curve, 150.0) == 0.6
    assert score_at(curve, 299.0) == 0.6 and score_at(curve, 1e9) == 0.65
    bare = anytime_curve(events)  # no base: nothing before the first trained model
    assert score_at(bare, 149.0) is None and score_at(bare, 150.0) == 0.6
    later = shifted(curve, 1000.0)  # the base's pretraining counted in
    assert score_at(later, 999.0) is None and score_at(later, 1000.0) == 0.55 and score_at(later, 1300.0) == 0.65


def test_mean_curve_and_first_reach():
    a = [_pt(0.0, 0.4), _pt(200.0, 0.8)]
    b = [_pt(100.0, 0.2)]
    mean = mean_curve([a, b])
    assert [x for x, _ in mean] == [0.0, 100.0, 200.0]
    assert mean[0][1] is None and mean[1][1] == pytest.approx(0.3) and mean[2][1] == pytest.approx(0.5)
    assert first_reach(mean, 0.5) == 200.0 and first_reach(mean, 0.3) == 100.0 and first_reach(mean, 0.9) is None


def test_summary_against_hand_computed_numbers():
    unit, pretrain = 100.0, 30.0
    runs = {name: [{"curve": [_pt(0.0, 0.1)]}, {"curve": [_pt(0.0, 0.1)]}] for name in STRATEGIES}
    runs["scratch_largest"] = [{"curve": [_pt(50.0, 0.3), _pt(100.0, 0.5)]},
                               {"curve": [_pt(50.0, 0.2), _pt(100.0, 0.7)]}]
    runs["growsearch"] = [{"curve": [_pt(0.0, 0.4), _pt(20.0, 0.65)]},
                          {"curve": [_pt(0.0, 0.4), _pt(60.0, 0.55)]}]
    s = summarize(runs, unit, pretrain)
    assert s["scratch_largest_final"] == pytest.approx(0.6)
    assert s["at_budget"]["scratch_largest"] == {"0.25": None, "0.5": pytest.approx(0.25), "1.0": pytest.approx(0.6)}
    assert s["at_budget"]["growsearch"] == {"0.25": pytest.approx(0.525), "0.5": pytest.approx(0.525),
                                            "1.0": pytest.approx(0.6)}
    # pretraining (30) counted in: the grown curves start at 30; scratch's do not move
    assert s["at_budget_with_pretraining"]["growsearch"] == {"0.25": None, "0.5": pytest.approx(0.525),
                                                             "1.0": pytest.approx(0.6)}
    assert s["at_budget_with_pretraining"]["scratch_largest"] == s["at_budget"]["scratch_largest"]
    assert s["at_budget_with_pretraining"]["scratch_search"] == {"0.25": 0.1, "0.5": 0.1, "1.0": 0.1}
    assert s["ratio_to_scratch_largest_final"]["growsearch"] == pytest.approx(0.6)
    assert s["ratio_to_scratch_largest_final"]["scratch_largest"] == pytest.approx(1.0)
    assert s["ratio_to_scratch_largest_final"]["grow_largest"] is None
    g = goals(s, margin=0.01)
    assert g["half_compute_to_scratch_final"] == {"met": False, "ratio": pytest.approx(0.6)}
    assert g["margin_over_scratch_largest"]["met"] is False  # nothing to compare at 25%: not met
    assert g["margin_over_scratch_largest"]["by_budget"]["0.5"] == pytest.approx(0.275)
    assert g["growsearch_best_at_every_budget"]["met"] is True


def test_largest_plan_is_the_largest_the_constraint_allows():
    task = load_dataset("mnist1d")
    base = default_config("mlp", task)
    space = load_space("mlp.yaml")
    x = task.x_train[:1]
    best = largest_plan(space, base, x)
    assert space.violation(base, best, x) is None
    with torch.device("meta"):
        size = count_params(planned_config(base, best).build())
    plans = grid(space, base)
    assert len(plans) > 20
    for plan in plans:
        with torch.device("meta"):
            params = count_params(planned_config(base, plan).build())
        assert params <= size or space.violation(base, plan, x) is not None, plan.describe()


@pytest.fixture(scope="module")
def quick_result():
    return run_headline_benchmark(get_pool("mnist1d-mlp", quick=True), seeds=(0,))


def test_json_contract_and_compute_sums(quick_result):
    r = quick_result
    assert r["strategies"] == list(STRATEGIES) == ["scratch_largest", "scratch_search", "grow_largest",
                                                    "growsearch", "growsearch_random_pruning"]
    for key in ("at_budget", "at_budget_with_pretraining", "ratio_to_scratch_largest_final", "runs"):
        assert set(r[key]) == set(STRATEGIES), key
    for name in STRATEGIES:
        assert set(r["at_budget"][name]) == {"0.25", "0.5", "1.0"} == {str(b) for b in BUDGETS}
        assert len(r["runs"][name]) == 1 and r["runs"][name][0]["seed"] == 0
        run = r["runs"][name][0]
        assert run["total_compute"] == pytest.approx(sum(run["compute_by_stage"].values()))
        assert run["curve"][-1]["compute"] <= run["total_compute"] * (1 + 1e-9)
    json.dumps(r)  # JSON-ready
    pool = get_pool("mnist1d-mlp", quick=True)
    task = load_dataset(pool.dataset)
    n = len(task.x_train)
    largest = planned_config(default_config("mlp", task), ExpansionPlan.from_dict(r["largest"]["plan"]))
    per_example = 3 * flops_per_example(largest.build(), task.x_train[:1])
    unit = per_example * n * pool.recipe.epochs  # one full training of the largest
    assert r["scratch_largest_compute"] == pytest.approx(unit)
    assert r["runs"]["scratch_largest"][0]["total_compute"] == pytest.approx(unit)
    assert r["runs"]["grow_largest"][0]["total_compute"] == pytest.approx(unit)  # same architecture, same recipe
    base_per_example = 3 * flops_per_example(default_config("mlp", task).build(), task.x_train[:1])
    assert r["base"]["pretrain_compute"] == pytest.approx(base_per_example * n * pool.base_epochs)
    gs = r["runs"]["growsearch"][0]["compute_by_stage"]
    rp = r["runs"]["growsearch_random_pruning"][0]["compute_by_stage"]
    # the reference run trains the base for the full recipe; random pruning spends nothing on screening
    assert gs["reference"] == pytest.approx(base_per_example * n * pool.recipe.epochs) == rp["reference"]
    assert gs["screening"] > 0 and "screening" not in rp
    # growth strategies start from the base (compute 0); scratch strategies have nothing before training
    assert r["runs"]["growsearch"][0]["curve"][0] == {"compute": 0.0, "score": r["base"]["score"],
                                                      "val": r["base"]["val"], "model": "base"}
    assert r["at_budget"]["scratch_largest"]["0.25"] is None
    search = r["runs"]["scratch_search"][0]
    assert search["total_compute"] >= search["horizon"] >= unit


def test_same_seed_same_curves(quick_result):
    setting = make_setting(get_pool("mnist1d-mlp", quick=True))
    again = run_seed(setting, 0, strategies=("scratch_largest", "growsearch"))
    for name in ("scratch_largest", "growsearch"):
        assert again[name]["curve"] == quick_result["runs"][name][0]["curve"], name
        assert again[name]["compute_by_stage"] == quick_result["runs"][name][0]["compute_by_stage"]


def test_table_and_figure(quick_result, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "headline-quick.json").write_text(json.dumps({**quick_result, "command": "growsearch bench headline"}))
    out = tmp_path / "docs" / "benchmarks.md"
    assert main(["bench", "table", "--results", str(results), "--out", str(out)]) == 0
    text = out.read_text()
    assert "### mnist1d-mlp-quick" in text and "| **growsearch** |" in text and "Goals" in text
    png = tmp_path / "docs" / "headline-mnist1d-mlp-quick.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("args,needle", [
    (["--pool", "imagenet"], "--pool: got 'imagenet'"),
    (["--pool", "mnist1d-mlp", "--seeds", "0", "-1"], "--seeds: got [0, -1]"),
    (["--pool", "mnist1d-mlp", "--seeds", "1", "1"], "--seeds: got [1, 1]"),
    (["--pool", "mnist1d-mlp", "--jobs", "0"], "--jobs: got 0"),
])
def test_bad_input_writes_nothing(tmp_path, capsys, args, needle):
    out = tmp_path / "h.json"
    assert main(["bench", "headline", *args, "--out", str(out)]) == 2
    assert needle in capsys.readouterr().err and not out.exists()


def test_flops_on_meta_equal_flops_on_cpu():
    """The budget unit is measured on the meta device: the same count as a real forward."""
    task = load_dataset("mnist1d")
    cfg = default_config("mlp", task)
    with torch.device("meta"):
        meta = flops_per_example(cfg.build(), task.x_train[:1].to("meta"))
    assert meta == flops_per_example(cfg.build(), task.x_train[:1])


def test_every_arm_trains_with_the_pools_recipe(monkeypatch, tmp_path):
    """Issue 20: scratch-largest and grow-largest (the product's train_candidate) train with
    the same recipe, the pool's -- the same learning rate -- not lr x 2 for the grown arm."""
    import growsearch.bench.headline as headline
    import growsearch.search.trials as trials

    setting = make_setting(get_pool("mnist1d-mlp", quick=True))
    seen = {}

    class RecipeSeenError(Exception):
        pass

    def spy(arm):
        def train(model, task, recipe, **kwargs):
            seen[arm] = recipe
            raise RecipeSeenError  # the recipe is all this test needs: no training
        return train

    monkeypatch.setattr(headline, "train", spy("scratch_largest"))
    monkeypatch.setattr(trials, "train", spy("grow_largest"))
    with pytest.raises(RecipeSeenError):
        headline.run_scratch_largest(setting, 0, tmp_path)
    with pytest.raises(RuntimeError, match="grow_largest failed"):  # the candidate's failure: our RecipeSeenError
        headline.run_grow_largest(setting, 0, tmp_path)
    assert seen["grow_largest"].lr == seen["scratch_largest"].lr == setting.pool.recipe.lr
    assert seen["grow_largest"] == seen["scratch_largest"] == setting.pool.recipe


def test_budgeted_goals_against_hand_computed_numbers():
    def arm(values):
        return {"at_own_budget": values, "ratio_to_scratch_largest_final": dict.fromkeys(values)}

    others = {name: {"0.25": 0.5, "0.5": 0.5, "1.0": 0.5, "2.0": 0.5} for name in STRATEGIES}
    others["scratch_largest"] = {"0.25": 0.40, "0.5": 0.55, "1.0": 0.60, "2.0": 0.60}
    others["growsearch_random_pruning"] = {"0.25": 0.52, "0.5": 0.52, "1.0": 0.52, "2.0": 0.52}
    budgeted = {"others_at_budget": others, "arms": {
        "growsearch_budget": arm({"0.25": 0.61, "0.5": 0.62, "1.0": 0.605, "2.0": 0.70}),
        "growsearch_budget_surrogate_params": arm({"0.25": 0.5, "0.5": 0.5, "1.0": 0.5, "2.0": 0.5}),
        "growsearch_budget_no_surrogate": arm({"0.25": 0.52, "0.5": 0.51, "1.0": 0.6, "2.0": 0.6})}}
    g = goals_budgeted(budgeted, target=0.60, margin=0.01)
    assert g["best_at_every_budget"]["met"] is True
    assert g["margin_over_scratch_largest"]["met"] is False  # +0.005 at 100%
    assert g["margin_over_scratch_largest"]["by_budget"]["1.0"] == pytest.approx(0.005)
    assert g["half_compute_to_scratch_final"]["met"] is True
    assert g["half_compute_to_scratch_final"]["reached_at"] == ["0.25", "0.5"]
    assert g["no_surrogate_vs_random_pruning"]["met"] is False
    assert g["no_surrogate_vs_random_pruning"]["behind"] == [
        {"budget": "0.5", "no_surrogate": 0.51, "random_pruning": 0.52}]
    others["grow_largest"]["2.0"] = 0.71
    behind = goals_budgeted(budgeted, target=0.60, margin=0.01)["best_at_every_budget"]
    assert behind == {"met": False, "behind": [{"budget": "2.0", "strategy": "grow_largest",
                                                "growsearch_budget": 0.70, "other": 0.71}]}
    low = goals_budgeted(budgeted, target=0.65, margin=0.01)["half_compute_to_scratch_final"]
    assert low["met"] is False and low["reached_at"] == []


def test_budgeted_arms_each_within_its_budget(quick_result):
    """Each budgeted arm: one run per budget, spending at most its budget (counted here from
    the curve's events and by the search itself, the same count), in the same unit."""
    r = quick_result
    b = r["budgeted"]
    unit = r["scratch_largest_compute"]
    assert b["budgets"] == list(BUDGETED) == [0.25, 0.5, 1.0, 2.0]
    assert b["unit_check"] == {"headline_unit_flops": unit, "search_unit_flops": [pytest.approx(unit)], "same": True}
    assert set(b["arms"]) == set(BUDGET_ARMS) == {"growsearch_budget", "growsearch_budget_surrogate_params",
                                                  "growsearch_budget_no_surrogate"}
    for name, row in b["arms"].items():
        for key in ("0.25", "0.5", "1.0", "2.0"):
            (run,) = row["runs"][key]
            assert run["seed"] == 0 and run["budget"] == float(key)
            assert run["budget_flops"] == pytest.approx(float(key) * unit)
            assert run["total_compute"] <= run["budget_flops"] * (1 + 1e-9), (name, key)
            assert run["total_compute"] == pytest.approx(run["spent_flops"]), (name, key)  # the search's own count
            assert row["spent_vs_budget"][key] <= 1 + 1e-9
            assert "reference" not in run["compute_by_stage"]  # with a budget: no reference run unless asked
            assert run["curve"][0]["model"] == "base"
            assert run["curve"][-1]["compute"] <= run["total_compute"] * (1 + 1e-9)
            assert row["at_own_budget"][key] == score_at(run["curve"], float(key) * unit)
            screening = run["compute_by_stage"].get("screening", 0.0)
            assert (screening == 0.0) == (name == "growsearch_budget_no_surrogate"), (name, key)
    no_surrogate = b["arms"]["growsearch_budget_no_surrogate"]["runs"]
    assert all(run["weights"]["surrogate"] == 0.0 for runs in no_surrogate.values() for run in runs)
    for name in STRATEGIES:  # the five read at every budget; scratch_search past its horizon from its extension
        assert set(b["others_at_budget"][name]) == {"0.25", "0.5", "1.0", "2.0"}
    (extended,) = b["scratch_search_extended"]
    assert extended["horizon"] == pytest.approx(2.0 * unit) and extended["total_compute"] >= extended["horizon"]
    assert b["others_at_budget"]["scratch_search"]["2.0"] == score_at(extended["curve"], 2.0 * unit)
    assert b["others_at_budget"]["scratch_search"]["1.0"] == r["at_budget"]["scratch_search"]["1.0"]
    g = r["goals"]["growsearch_budget"]
    assert set(g) == {"best_at_every_budget", "margin_over_scratch_largest", "half_compute_to_scratch_final",
                      "no_surrogate_vs_random_pruning"}
    assert all(isinstance(v["met"], bool) for v in g.values())
    assert set(r["goals"]) >= {"growsearch_best_at_every_budget", "margin_over_scratch_largest",
                               "half_compute_to_scratch_final"}  # the five strategies' goals, as before


def test_budgeted_arms_in_the_table_and_older_results_still_render(quick_result, tmp_path):
    text = "\n".join(headline_table({**quick_result, "command": "growsearch bench headline"}))
    assert "| **growsearch_budget** |" in text and "| growsearch_budget_no_surrogate |" in text
    assert "Goals for growsearch given a budget" in text and "| 200% |" in text
    older = {k: v for k, v in quick_result.items() if k != "budgeted"}
    older["goals"] = {k: v for k, v in quick_result["goals"].items() if k != "growsearch_budget"}
    old_text = "\n".join(headline_table(older))
    assert "| **growsearch** |" in old_text and "growsearch_budget" not in old_text
    assert headline_figure(older, tmp_path / "old.png").read_bytes()[:4] == b"\x89PNG"
    assert headline_figure(quick_result, tmp_path / "new.png").read_bytes()[:4] == b"\x89PNG"
    committed = tmp_path / "committed"  # a committed result, as written before the budgeted arms
    committed.mkdir()
    source = json.loads((Path(__file__).resolve().parents[1] / "docs" / "results" / "headline-text-gpt.json")
                        .read_text())
    source.pop("budgeted", None)
    source["goals"].pop("growsearch_budget", None)
    (committed / "headline-text-gpt.json").write_text(json.dumps(source))
    rendered = render(committed)
    assert "### text-gpt" in rendered and "growsearch_budget" not in rendered


def test_no_budgets_runs_the_five_strategies_alone(quick_result, monkeypatch):
    import growsearch.bench.headline as headline

    def never(*args, **kwargs):
        raise AssertionError("a budgeted arm ran with budgets=()")

    monkeypatch.setattr(headline, "run_seed", lambda setting, seed, progress=None: {
        name: quick_result["runs"][name][0] for name in STRATEGIES})
    monkeypatch.setattr(headline, "run_seed_budgeted", never)
    r = run_headline_benchmark(get_pool("mnist1d-mlp", quick=True), seeds=(0,), budgets=())
    assert "budgeted" not in r and "growsearch_budget" not in r["goals"]
    assert r["at_budget"] == quick_result["at_budget"] and r["goals"] == {
        k: v for k, v in quick_result["goals"].items() if k != "growsearch_budget"}


@pytest.mark.parametrize("budgets", [["0"], ["-1"], ["0.5", "0.5"], ["nan"]])
def test_bad_budgets_write_nothing(tmp_path, capsys, budgets):
    out = tmp_path / "h.json"
    assert main(["bench", "headline", "--pool", "mnist1d-mlp", "--budgets", *budgets, "--out", str(out)]) == 2
    assert "--budgets: got" in capsys.readouterr().err and not out.exists()


def test_reuse_takes_the_five_strategies_from_an_earlier_result(quick_result, monkeypatch):
    import growsearch.bench.headline as headline
    from growsearch.errors import ConfigError

    def never(*args, **kwargs):
        raise AssertionError("a strategy ran although its runs were reused")

    monkeypatch.setattr(headline, "run_seed", never)
    pool = get_pool("mnist1d-mlp", quick=True)
    r = run_headline_benchmark(pool, seeds=(0,), budgets=(0.5,), reuse=quick_result)
    assert r["runs"] == quick_result["runs"] and r["at_budget"] == quick_result["at_budget"]
    for arm in BUDGET_ARMS:  # the budgeted arms ran again: the same runs (the seconds aside)
        (ran,) = r["budgeted"]["arms"][arm]["runs"]["0.5"]
        (before,) = quick_result["budgeted"]["arms"][arm]["runs"]["0.5"]
        assert ran["curve"] == before["curve"] and ran["spent_flops"] == before["spent_flops"], arm
    assert "reused" in r
    for changes, needle in [({"pool": "mnist1d-cnn"}, "--reuse: its pool"), ({"seeds": [1]}, "--reuse: its seeds")]:
        with pytest.raises(ConfigError, match=needle):
            run_headline_benchmark(pool, seeds=(0,), budgets=(0.5,), reuse={**quick_result, **changes})
