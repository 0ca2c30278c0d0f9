"""The budgeted search (``budget:``): spent within the budget and every spend counted, a
too-small budget refused before anything is written, determinism and resume, the online
surrogate check in leaderboard.md and MLflow, the reference after the candidates, the
largest allowed expansion proposed first, and the proposal mix's weights."""

import json

import pandas as pd
import pytest
from conftest import tiny_search_config

from growsearch.metrics.cost import training_flops
from growsearch.search import load_config, run_search
from growsearch.search.budget import largest_allowed, source_weights
from growsearch.search.executors import LocalExecutor
from growsearch.search.space import load_space


def budgeted(full_trainings=1.0, **changes):
    return tiny_search_config(budget={"full_trainings": full_trainings}, **{"candidates": 8, **changes})


class Observed(LocalExecutor):
    """The local executor, remembering the order of its trainings; raises after ``fail_after`` calls."""

    def __init__(self, ctx, fail_after=None):
        super().__init__(ctx, "cpu")
        self.jobs, self.calls, self.fail_after, self.screens = [], 0, fail_after, 0

    def _tick(self):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt  # an interruption between two stages of work

    def rescreen(self, records, proposer):
        self._tick()
        self.screens += len(records)
        super().rescreen(records, proposer)

    def train(self, jobs, scheduler, on_epoch=None, on_record=lambda r: None):
        self._tick()
        self.jobs += [j.id for j in jobs]
        super().train(jobs, scheduler, on_epoch, on_record)


def _board(out):
    board = pd.read_csv(out / "leaderboard.csv")
    return board.drop(columns=["seconds"]).to_csv(index=False)


def _spent_from_records(out):
    """Screening + every training epoch + the reference, from the records alone."""
    total = 0.0
    for path in (out / "candidates").glob("*.json"):
        r = json.loads(path.read_text())
        examples = (r.get("screen_cost") or 0) + (r.get("train_cost") or 0)
        if r.get("flops") is not None:
            total += training_flops(r["flops"], examples)
    return total


def test_budget_is_respected_counted_and_recorded(tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "run"
    observed = []

    def make(ctx, cfg):
        observed.append(Observed(ctx))
        return observed[0]

    run_search(load_config(budgeted(0.6, reference=True, tracking={"enabled": True, "uri": uri})), out,
               make_executor=make)
    summary = json.loads((out / "budget.json").read_text())
    assert 0 < summary["spent_flops"] <= summary["budget_flops"]
    assert summary["spent_flops"] == pytest.approx(_spent_from_records(out), rel=1e-9)  # every spend counted
    assert summary["budget_full_trainings"] == pytest.approx(0.6)
    # the reference trains after every candidate
    assert observed[0].jobs[-1] == "base" and observed[0].jobs.count("base") == 1
    assert json.loads((out / "candidates" / "base.json").read_text())["final_score"] is not None
    board = pd.read_csv(out / "leaderboard.csv")
    assert (board["budget_flops"] == summary["budget_flops"]).all()
    assert (board["spent_flops"] == summary["spent_flops"]).all()
    md = (out / "leaderboard.md").read_text()
    assert "Budget: " in md and "spent: " in md and "Surrogate check (Kendall tau" in md
    assert "every training epoch and the reference run)" in md  # reference: true, counted
    taus = [t for t in summary["surrogate_tau"] if t["tau"] is not None]
    assert taus, summary["surrogate_tau"]
    client = mlflow.MlflowClient(uri)
    parent = client.search_runs([e.experiment_id for e in client.search_experiments()],
                                "tags.`growsearch.role` = 'search'")[0]
    history = client.get_metric_history(parent.info.run_id, "surrogate_tau")
    assert [(m.step, m.value) for m in history] == [(t["step"], pytest.approx(t["tau"])) for t in taus]
    assert parent.data.metrics["budget"] == pytest.approx(summary["budget_flops"])
    assert parent.data.metrics["spent"] == pytest.approx(summary["spent_flops"])
    assert parent.data.params["config.budget.full_trainings"] == "0.6"


def test_a_budget_too_small_is_one_line_and_nothing_is_written(tmp_path, capsys):
    import yaml

    from growsearch.cli import main

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(tiny_search_config(budget={"flops": 1000.0})))
    out = tmp_path / "run"
    assert main(["run", str(cfg), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("growsearch: error: budget: 1e+03 FLOPs") and "too small for one candidate's first rung" \
        in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_same_seed_same_leaderboard_and_resume_is_identical(tmp_path):
    cfg = budgeted(1.0)
    run_search(load_config(cfg), tmp_path / "a")
    run_search(load_config(cfg), tmp_path / "b")
    assert _board(tmp_path / "a") == _board(tmp_path / "b")
    # interrupted after a few stages of work (screens and trainings), then resumed
    for fail_after in (2, 4):
        out = tmp_path / f"resumed{fail_after}"
        with pytest.raises(KeyboardInterrupt):
            run_search(load_config(cfg), out, make_executor=lambda ctx, c, n=fail_after: Observed(ctx, n))
        assert not (out / "leaderboard.csv").exists()
        run_search(load_config(cfg), out, resume=True)
        assert _board(out) == _board(tmp_path / "a"), fail_after
        assert json.loads((out / "budget.json").read_text()) == json.loads((tmp_path / "a" / "budget.json").read_text())


def test_the_largest_allowed_expansion_is_proposed_first(tmp_path):
    from growsearch.models import config_from_spec

    out = tmp_path / "run"
    run_search(load_config(budgeted(3.0)), out)
    first = json.loads((out / "candidates" / "c0000.json").read_text())
    base = json.loads((out / "base" / "spec.json").read_text())
    import torch

    _, plan = largest_allowed(load_space("mlp.yaml"), config_from_spec(base), torch.zeros(1, 8, 8))
    assert first["source"] == "largest" and first["plan_name"] == plan.describe() and first["init"] == "masked"
    assert first["stage"] in ("completed", "stopped_early")  # a budget of 3 full trainings affords its first rung
    assert not (out / "candidates" / "base.json").exists()  # with a budget: no reference run unless asked


def test_source_weights_move_toward_the_source_that_wins():
    before = source_weights({}, None, incumbent=True)
    assert before["sampler"] == before["surrogate"] == before["incumbent"] == pytest.approx(1 / 3)
    after = source_weights({"incumbent": 3}, None, incumbent=True)
    assert after["incumbent"] > before["incumbent"] and after["sampler"] < before["sampler"]
    assert source_weights({}, None, incumbent=False)["incumbent"] == 0
    # a surrogate that ranks backwards loses weight; one that ranks well keeps it
    assert source_weights({}, -0.8, True)["surrogate"] < source_weights({}, 0.0, True)["surrogate"] < \
        source_weights({}, 0.9, True)["surrogate"]


def test_budget_config_errors():
    from growsearch.errors import ConfigError

    for changes, message in [({"budget": {}}, "budget: got neither"),
                             ({"budget": {"flops": 0}}, "budget.flops: got 0.0"),
                             ({"budget": {"flops": 1e9}, "early_stopping": {"policy": "asha"}},
                              "with a budget the search halves synchronously"),
                             ({"budget": {"flops": 1e9}, "training": {"epochs": 3, "steps": 10}}, "training.steps"),
                             ({"budget": {"flops": 1e9}, "objectives": ["manifold_metric", "params"],
                               "sampler": {"name": "nsga2"}}, "one objective")]:
        with pytest.raises(ConfigError, match=message):
            load_config(tiny_search_config(**changes))
    assert "budget" not in load_config(tiny_search_config()).to_dict()  # a search without one saves what it saved


@pytest.mark.slow
def test_budgeted_search_on_local_ray_equals_the_in_process_one(tmp_path, monkeypatch):
    """Screens and trainings of the budgeted search as Ray Tune trials (a real local Ray
    instance): the same leaderboard and the same spend as the in-process executor."""
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    local = tiny_search_config(budget={"full_trainings": 1.0}, candidates=6)
    ray = {**local, "executor": {"name": "ray", "max_concurrent_trials": 2, "max_failures": 1}}
    run_search(load_config(local), tmp_path / "local")
    run_search(load_config(ray), tmp_path / "ray")
    assert _board(tmp_path / "ray") == _board(tmp_path / "local")
    spent = [json.loads((tmp_path / d / "budget.json").read_text())["spent_flops"] for d in ("ray", "local")]
    assert spent[0] == spent[1]


def _without(cfg, key):
    return {k: v for k, v in cfg.items() if k != key}


def test_the_budget_decides_how_many_candidates_and_an_older_folder_keeps_its_cap(tmp_path):
    uncapped = load_config(_without(budgeted(1.0), "candidates"))
    assert uncapped.candidates is None and uncapped.to_dict()["candidates"] is None  # the budget decides
    assert uncapped.reference is None  # and no reference run unless asked
    unbudgeted = load_config(_without(tiny_search_config(), "candidates"))
    assert unbudgeted.candidates == 12 and unbudgeted.reference is True  # no budget: as before
    from growsearch.errors import ConfigError

    with pytest.raises(ConfigError, match="candidates: got 0"):
        load_config(budgeted(1.0, candidates=0))
    # a folder begun when a budgeted search's cap defaulted to 12 (saved as candidates: 12)
    # resumes under a config that leaves the cap out, and ends as it would have
    legacy = budgeted(1.0, candidates=12, reference=True)
    run_search(load_config(legacy), tmp_path / "whole")
    out = tmp_path / "legacy"
    with pytest.raises(KeyboardInterrupt):
        run_search(load_config(legacy), out, make_executor=lambda ctx, c: Observed(ctx, 3))
    run_search(load_config(_without(_without(legacy, "candidates"), "reference")), out, resume=True)
    assert _board(out) == _board(tmp_path / "whole")
    assert (out / "candidates" / "base.json").exists()


def test_surrogate_none_is_hyperband_without_a_screen(tmp_path, capsys):
    import yaml

    from growsearch.cli import main

    out = tmp_path / "run"
    observed = []

    def make(ctx, cfg):
        observed.append(Observed(ctx))
        return observed[0]

    cfg = budgeted(1.0, surrogate="none")
    run_search(load_config(cfg), out, make_executor=make)
    records = [json.loads(p.read_text()) for p in (out / "candidates").glob("c*.json")]
    assert records and observed[0].jobs and observed[0].screens == 0  # candidates trained, none screened
    assert all("manifold_metric" not in r for r in records)
    assert {r.get("screen_cost") for r in records if r["stage"] != "rejected"} == {0.0}
    assert {r["source"] for r in records} <= {"largest", "sampler", "incumbent"}
    summary = json.loads((out / "budget.json").read_text())
    assert summary["surrogate"] == "none" and summary["surrogate_tau"] == [] and summary["weights"]["surrogate"] == 0
    assert 0 < summary["spent_flops"] <= summary["budget_flops"]
    assert summary["spent_flops"] == pytest.approx(_spent_from_records(out), rel=1e-9)
    assert "every training epoch; no reference run)" in (out / "leaderboard.md").read_text()
    # without a budget there is nothing to promote by: one line, exit 2, nothing written
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(tiny_search_config(surrogate="none")))
    assert main(["run", str(path), "--out", str(tmp_path / "no")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("growsearch: error: surrogate: got 'none'") and len(err.splitlines()) == 1
    assert not (tmp_path / "no").exists()
