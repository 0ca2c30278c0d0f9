"""The search engine: config validation, spaces, promotion, a tiny search, resume, failures."""

import json
import math
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import optuna
import pandas as pd
import pytest
import torch
import yaml
from conftest import tiny_search_config

from growsearch.errors import ConfigError
from growsearch.grow import DEFAULT_INIT
from growsearch.models import config_from_spec
from growsearch.search import load_config, load_space, run_search
from growsearch.search.inputs import study_name
from growsearch.search.promote import Pareto, TopFraction, TopK
from growsearch.search.schedulers import ASHA


def tiny(**changes):
    return tiny_search_config(**changes)


# -- config and space validation -------------------------------------------------------
@pytest.mark.parametrize("changes, message", [
    ({"candidatez": 3}, "config.candidatez: unknown key"),
    ({"candidates": "many"}, "config.candidates: got 'many'; allowed: int"),
    ({"candidates": 0}, "candidates: got 0; allowed: a positive integer"),
    ({"promotion": {"policy": "top_k", "k": 9}}, "promotion.k: got 9; allowed: 1..5"),
    ({"promotion": {"policy": "best"}}, "config.promotion.policy: got 'best'"),
    ({"training": {"epochs": -1}}, "recipe.epochs: got -1"),
    ({"training": {"lr": "fast"}}, "config.training.lr: got 'fast'"),
    ({"base": {}}, "base: give exactly one of checkpoint, pretrain or hf"),
    ({"objectives": ["params"]}, "objectives: got ['params']; the first must be manifold_metric"),
    ({"sampler": {"name": "nsga2"}}, "nsga2 needs two objectives"),
    ({"manifold": {"vertices": 0}}, "manifold.vertices: got 0"),
    ({"surrogate": "grasp"}, "surrogate: got 'grasp'; allowed: manifold, params, naswot"),
    ({"surrogate": ["manifold", "zen"]}, "surrogate[1]: got 'zen'"),
    ({"surrogate": ["naswot"]}, "a list of two or more different names"),
])
def test_bad_configs(changes, message):
    with pytest.raises(ConfigError) as err:
        load_config(tiny(**changes))
    assert message in str(err.value)


@pytest.mark.parametrize("space, message", [
    ({"family": "mlp", "knobs": {"width": {"low": 3, "high": 2}}}, "knobs.width: empty range 3..2"),
    ({"family": "mlp", "knobs": {"wide": {"low": 1, "high": 2}}}, "knobs.wide: unknown knob"),
    ({"family": "mlp", "knobs": {"width": {"low": 0.5, "high": 2}}}, "knobs.width.low: got 0.5"),
    ({"family": "mlp", "knobs": {"init": {"choices": ["lemon"]}}}, "allowed values: split_signed, masked, zero_out"),
    ({"family": "mlp", "knobs": {"n_heads": {"low": 1, "high": 2}}}, "applies to the gpt and hf families only"),
    ({"family": "rnn", "knobs": {}}, "family: got 'rnn'"),
    ({"family": "mlp", "knobs": {}}, "knobs: missing or empty"),
    ({"family": "mlp", "knobs": {"depth": {"low": 1, "high": 2}}, "constraints": {"max_ram": 3}},
     "constraints.max_ram: unknown"),
])
def test_bad_spaces(space, message):
    with pytest.raises(ConfigError) as err:
        load_space(space)
    assert message in str(err.value)


def test_malformed_space_file_names_file_and_line(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("family: mlp\nknobs: {width: [1,\n")
    with pytest.raises(ConfigError, match=r"s\.yaml is not valid YAML at line"):
        load_space(path)


@pytest.mark.parametrize("family, spec", [
    ("mlp", {"family": "mlp", "in_dim": 40, "out_dim": 10, "hidden": [32, 32]}),
    ("cnn", {"family": "cnn", "in_channels": 1, "num_classes": 10, "channels": [8, 16], "blocks": [1, 1]}),
    ("gpt", {"family": "gpt", "vocab_size": 50, "block_size": 16, "d_model": 16, "n_heads": 2}),
])
def test_bundled_spaces_compile_and_propose_valid_plans(family, spec):
    from growsearch.grow import resolve

    space = load_space(f"{family}.yaml")
    base = config_from_spec(spec)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    kinds = set()
    for _ in range(30):
        trial = study.ask()
        plan, init = space.suggest(trial, base)
        resolve(base, plan)  # never an impossible plan
        kinds.add(plan.kind)
        assert init in (DEFAULT_INIT, "random")
        study.tell(trial, 0.0)
    assert kinds == {"width", "depth", "mixed"}
    dists = study.trials[0].distributions
    assert isinstance(dists["kind"], optuna.distributions.CategoricalDistribution)


def test_constraints_reject_without_compute():
    space = load_space({"family": "mlp", "knobs": {"width": {"low": 1, "high": 8}},
                        "constraints": {"max_params": 5000}})
    base = config_from_spec({"family": "mlp", "in_dim": 40, "out_dim": 10, "hidden": [32, 32]})
    from growsearch.grow import ExpansionPlan

    assert space.violation(base, ExpansionPlan(width=1.25), torch.zeros(1, 40)) is None
    assert "max_params 5000" in space.violation(base, ExpansionPlan(width=4), torch.zeros(1, 40))


# -- policies on fixed inputs ------------------------------------------------------------
SCREENED = [
    {"id": "a", "manifold_metric": 0.1, "params": 100},
    {"id": "b", "manifold_metric": 0.9, "params": 900},
    {"id": "c", "manifold_metric": 0.5, "params": 200},
    {"id": "d", "manifold_metric": 0.5, "params": 300},
    {"id": "e", "manifold_metric": 0.3, "params": 400},
]


def test_promotion_policies():
    assert TopK(2).select(SCREENED) == ["b", "c"]
    assert TopK(3).select(SCREENED) == ["b", "c", "d"]  # tie broken by fewer params
    assert TopFraction(0.5).select(SCREENED) == ["b", "c", "d"]  # ceil(2.5)
    assert TopFraction(0.01).select(SCREENED) == ["b"]
    assert Pareto("params").select(SCREENED) == ["b", "c", "a"]  # d and e are dominated by c


def test_asha_rungs_and_decisions():
    asha = ASHA(max_epochs=10, grace=1, eta=2)
    assert asha.rungs == [1, 2, 4, 8]
    assert asha.on_epoch("x", 1, 0.5)  # first at the rung continues
    assert not asha.on_epoch("y", 1, 0.4)  # below the earlier [0.5]
    assert asha.on_epoch("z", 1, 0.9)
    assert asha.on_epoch("z", 3, 0.1)  # not a rung
    # Ray's rule: the cutoff comes from the earlier scores, then the new one is recorded
    asha = ASHA(max_epochs=9, grace=1, eta=3)
    assert [asha.on_epoch(t, 1, s) for t, s in (("a", 0.0), ("b", 1.0), ("c", 0.7))] == [True, True, True]
    # a diverged (-inf / NaN) score: a number for a cutoff, never NaN, and a good trial continues
    asha = ASHA(max_epochs=9, grace=1, eta=3)
    assert asha.on_epoch("a", 1, -math.inf) and asha.on_epoch("b", 1, float("nan"))
    assert asha.on_epoch("c", 1, 0.9) and math.isfinite(asha.cutoff(1))


class _TrialHandle:
    """What Ray's scheduler reads of a trial: its id."""

    def __init__(self, trial_id):
        self.trial_id = trial_id


@pytest.mark.parametrize("grace,eta,max_t", [(1, 2, 10), (1, 3, 9), (2, 3, 20), (3, 3, 12), (1, 4, 17)])
def test_asha_decides_exactly_as_rays_asha_scheduler(grace, eta, max_t):
    """Random result sequences (trials interleaved, ties, diverged scores) through Ray
    Tune's real ASHAScheduler and ours: the same decision for every result."""
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    from growsearch.search.schedulers import finite_score

    rng = np.random.default_rng(grace * 100 + eta * 10 + max_t)
    decisions = 0
    for _ in range(40):
        ray_asha = ASHAScheduler(time_attr="epoch", metric="score", mode="max", max_t=max_t,
                                 grace_period=grace, reduction_factor=eta)
        ours = ASHA(max_t, grace, eta)
        n = int(rng.integers(2, 12))
        trials = [_TrialHandle(f"t{i}") for i in range(n)]
        for t in trials:
            ray_asha.on_trial_add(None, t)
        epoch = dict.fromkeys(range(n), 0)
        live = list(range(n))
        while live:
            i = int(rng.choice(live))
            epoch[i] += 1
            kind = rng.random()
            score = -math.inf if kind < 0.05 else float("nan") if kind < 0.08 else \
                float(rng.integers(0, 5)) / 4 if kind < 0.3 else float(rng.random())
            if epoch[i] >= max_t:  # the end of training: Ray stops at max_t, we just end
                live.remove(i)
                continue
            # the executor reports finite_score(score) to Tune (never NaN/-inf)
            theirs = ray_asha.on_trial_result(None, trials[i], {"epoch": epoch[i], "score": finite_score(score)})
            mine = ours.on_epoch(trials[i].trial_id, epoch[i], score)
            assert mine == (theirs == TrialScheduler.CONTINUE), (grace, eta, max_t, i, epoch[i], score)
            decisions += 1
            if not mine:
                live.remove(i)
    assert decisions > 500


def test_successive_halving_keeps_the_best_ceil_n_over_eta():
    from growsearch.search.schedulers import SuccessiveHalving

    sha = SuccessiveHalving(max_epochs=12, grace=3, eta=3)
    assert sha.rungs == [3, 9]
    order = ["c1", "c2", "c3", "c4"]
    assert sha.survivors({"c1": 0.5, "c2": 0.9, "c3": 0.7}, order) == ["c2"]
    assert sha.survivors({"c1": 0.5, "c2": 0.9, "c3": 0.7, "c4": 0.8}, order) == ["c2", "c4"]
    assert sha.survivors({"c1": 0.7, "c3": 0.7}, order) == ["c1"]  # a tie: promotion order
    assert sha.survivors({"c1": -math.inf, "c2": float("nan"), "c3": 0.1}, order) == ["c3"]
    assert sha.survivors({"c2": 0.1}, order) == ["c2"]


# -- end to end ---------------------------------------------------------------------------
def test_tiny_search_end_to_end(tmp_path):
    out = tmp_path / "run"
    result = run_search(load_config(tiny()), out)
    board = pd.read_csv(out / "leaderboard.csv")
    assert {"candidate", "plan", "params", "manifold_metric", "stage", "final_accuracy"} <= set(board.columns)
    cands = board[board["candidate"] != "base"]
    assert len(cands) == 5 and cands["candidate"].is_unique
    trained = cands[cands["stage"].isin(["completed", "stopped_early"])]
    assert 1 <= len(trained) <= 2 and trained["final_accuracy"].notna().all()
    assert set(cands["stage"]) <= {"completed", "stopped_early", "screened", "rejected", "failed"}
    assert (board["candidate"] == "base").sum() == 1
    for name in ("leaderboard.md", "config.yaml", "plots/surrogate_vs_accuracy.png", "plots/accuracy_vs_params.png",
                 "best/model.safetensors", "best/spec.json"):
        assert (out / name).exists(), name
    # the best model loads with growsearch and with plain PyTorch
    from safetensors.torch import load_file

    from growsearch.checkpoint import load_checkpoint
    from growsearch.models import build

    model, spec, meta = load_checkpoint(out / "best")
    plain = build(json.loads((out / "best" / "spec.json").read_text()))
    plain.load_state_dict(load_file(out / "best" / "model.safetensors"))
    assert meta["candidate"] == result.best["id"] and spec["family"] == "mlp"
    x = torch.randn(4, 8, 8)
    assert torch.equal(model.eval()(x), plain.eval()(x))
    # re-rendering from the records gives the same leaderboard
    before = (out / "leaderboard.csv").read_text()
    (out / "leaderboard.csv").unlink()
    from growsearch.cli import main

    assert main(["report", str(out)]) == 0
    assert (out / "leaderboard.csv").read_text() == before


def test_surrogate_rank_mean_decides_promotion(tmp_path):
    """surrogate: [params, naswot] promotes by the mean rank of the two; the leaderboard,
    promotion.json and MLflow say so."""
    import mlflow

    out = tmp_path / "run"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = tiny(surrogate=["params", "naswot"], reference=False, promotion={"policy": "top_k", "k": 2},
               tracking={"enabled": True, "uri": uri})
    run_search(load_config(cfg), out)
    promo = json.loads((out / "promotion.json").read_text())
    assert promo["surrogate"] == "rank_mean(params,naswot)"
    records = [json.loads(p.read_text()) for p in sorted((out / "candidates").glob("c*.json"))]
    unique = promo["values"]  # the screened candidates, one per distinct expansion
    screened = {r["id"]: r for r in records if r["id"] in unique}
    assert len(screened) == len(unique) >= 2

    def rank(name, cid):  # by hand: rank 0 = best, ties share their mean rank
        v = screened[cid]["surrogate_parts"][name]
        vals = [r["surrogate_parts"][name] for r in screened.values()]
        return sum(u > v for u in vals) + (sum(u == v for u in vals) - 1) / 2

    for cid, value in unique.items():
        assert value == pytest.approx(-(rank("params", cid) + rank("naswot", cid)) / 2)
    best2 = sorted(unique, key=lambda c: (-unique[c], screened[c]["params"], c))[:2]
    assert promo["promoted"] == best2
    board = (out / "leaderboard.md").read_text()
    assert "Surrogate (what promotion ranked by): rank_mean(params,naswot)" in board
    parent = mlflow.MlflowClient(uri).search_runs(
        [e.experiment_id for e in mlflow.MlflowClient(uri).search_experiments()],
        "tags.`growsearch.role` = 'search'")[0]
    assert parent.data.params["config.surrogate"] == '["params", "naswot"]'


def test_existing_results_need_resume(tmp_path):
    out = tmp_path / "run"
    run_search(load_config(tiny(candidates=2, promotion={"policy": "top_k", "k": 1}, reference=False)), out)
    with pytest.raises(ConfigError, match="already holds a search; pass --resume"):
        run_search(load_config(tiny(candidates=2, promotion={"policy": "top_k", "k": 1}, reference=False)), out)
    with pytest.raises(ConfigError, match="config key 'candidates' differs"):
        run_search(load_config(tiny(candidates=3, promotion={"policy": "top_k", "k": 1}, reference=False)), out,
                   resume=True)


def test_diverging_candidates_fail_and_the_search_completes(tmp_path):
    out = tmp_path / "run"
    cfg = tiny(training={"epochs": 2, "lr": 1e12, "grad_clip": None, "optimizer": "sgd", "momentum": 0.0},
               reference=False)
    run_search(load_config(cfg), out)
    board = pd.read_csv(out / "leaderboard.csv")
    failed = board[board["stage"] == "failed"]
    assert len(failed) >= 2  # the promoted candidates diverged
    assert all(re.search(r"TrainingError: loss became (nan|inf)", r) for r in failed["reason"])
    assert "## Rejected and failed" in (out / "leaderboard.md").read_text()


def test_a_failed_reference_is_an_error_not_a_silent_fallback(tmp_path):
    from growsearch.errors import SearchFailed

    cfg = tiny(candidates=2, promotion={"policy": "top_k", "k": 1},
               training={"epochs": 2, "lr": 1e12, "grad_clip": None, "optimizer": "sgd", "momentum": 0.0})
    with pytest.raises(SearchFailed, match=r"reference training .* failed: TrainingError: loss became"):
        run_search(load_config(cfg), tmp_path / "run")
    assert not (tmp_path / "run" / "leaderboard.csv").exists()  # no gains against the untrained base


def test_rejected_candidates(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"family": "mlp", "knobs": {"width": {"low": 1.0, "high": 4.0}},
                                     "constraints": {"max_params": 5000}}))
    out = tmp_path / "run"
    run_search(load_config(tiny(space=str(space), reference=False, promotion={"policy": "top_fraction",
                                                                             "fraction": 1.0})), out)
    board = pd.read_csv(out / "leaderboard.csv")
    rejected = board[board["stage"] == "rejected"]
    assert len(rejected) >= 1 and rejected["reason"].str.contains("max_params 5000").all()
    assert rejected["manifold_metric"].isna().all()  # no compute was spent on them


def test_repeated_proposals_reuse_the_earlier_candidate(tmp_path, capsys):
    """A space of three expansions asked for five candidates: three distinct candidates,
    every repeat told the earlier candidate's value, then a message that the space is
    exhausted; resuming the finished search changes nothing."""
    from growsearch.search.engine import MAX_REPEATS

    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"family": "mlp", "knobs": {"depth": {"low": 1, "high": 3}}}))
    out = tmp_path / "run"
    cfg = tiny(space=str(space), candidates=5, reference=False)
    run_search(load_config(cfg), out)
    board = pd.read_csv(out / "leaderboard.csv")
    assert sorted(board["plan"]) == ["d1", "d2", "d3"] and list(board["candidate"].sort_values()) == \
        ["c0000", "c0001", "c0002"]
    assert f"proposed only earlier candidates {MAX_REPEATS} times in a row" in capsys.readouterr().err
    study = optuna.load_study(study_name=study_name(out), storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(out / "study.journal"))))
    trials = study.get_trials(deepcopy=False)
    values = {t.user_attrs["candidate"]: t.values for t in trials if "candidate" in t.user_attrs}
    repeats = [t for t in trials if "duplicate_of" in t.user_attrs]
    assert len(repeats) >= MAX_REPEATS and len(trials) == 3 + len(repeats)
    assert all(t.state == optuna.trial.TrialState.COMPLETE and t.values == values[t.user_attrs["duplicate_of"]]
               for t in repeats)
    before = board.to_csv()
    run_search(load_config(cfg), out, resume=True)
    assert pd.read_csv(out / "leaderboard.csv").to_csv() == before
    assert len(study.get_trials(deepcopy=False)) == len(trials)  # nothing asked again


def test_successive_halving_decides_each_rung_from_every_candidates_score(tmp_path):
    """Four promoted candidates, rungs at epochs 1 and 2 (eta 2): at each rung the best
    ceil(n/2) of those that reached it continue -- checked against the recorded scores."""
    out = tmp_path / "run"
    run_search(load_config(tiny(candidates=5, reference=False, promotion={"policy": "top_k", "k": 4},
                                training={"epochs": 4, "batch_size": 64})), out)
    promoted = json.loads((out / "promotion.json").read_text())["promoted"]
    records = {cid: json.loads((out / "candidates" / f"{cid}.json").read_text()) for cid in promoted}
    alive = list(promoted)
    for rung in (1, 2):
        scores = {cid: records[cid]["history"][rung - 1]["score"] for cid in alive}
        best = sorted(alive, key=lambda c: (-scores[c], promoted.index(c)))[:math.ceil(len(alive) / 2)]
        for cid in alive:
            if cid not in best:
                assert records[cid]["stage"] == "stopped_early" and records[cid]["epochs"] == rung, cid
        alive = [c for c in alive if c in best]
    assert len(alive) == 1 and records[alive[0]]["stage"] == "completed" and records[alive[0]]["epochs"] == 4
    assert not list(out.rglob("train_state.pt"))  # paused states are gone once decided


def _run_cli(args, **kw):
    return subprocess.Popen([sys.executable, "-m", "growsearch.cli", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _kill_9_and_resume(cfg, tmp_path, after):
    """``growsearch run`` of ``cfg`` in a real process, SIGKILLed once ``after`` candidate
    records exist, then run again with --resume; the config's path and the results folder."""
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "killed"
    proc = _run_cli(["run", cfg_path, "--out", out])
    deadline = time.time() + 240
    while time.time() < deadline and len(list((out / "candidates").glob("c*.json"))) < after:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "leaderboard.csv").exists()  # really interrupted
    interrupted_at = len(list((out / "candidates").glob("c*.json")))
    done = subprocess.run([sys.executable, "-m", "growsearch.cli", "run", cfg_path, "--out", out, "--resume"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return cfg_path, out, interrupted_at


def test_resume_after_kill_9(tmp_path):
    cfg = tiny(candidates=8, training={"epochs": 4, "batch_size": 32})
    _, out, interrupted_at = _kill_9_and_resume(cfg, tmp_path, 3)
    assert interrupted_at < 8  # really interrupted mid-screening
    resumed = pd.read_csv(out / "leaderboard.csv")
    fresh_out = tmp_path / "fresh"
    run_search(load_config(cfg), fresh_out)
    fresh = pd.read_csv(fresh_out / "leaderboard.csv")
    for board in (resumed, fresh):
        assert board["candidate"].is_unique and len(board) == 9  # 8 candidates + the reference
        assert not board[["plan", "init"]].duplicated().any()  # a repeated proposal is no new candidate
    key = ["candidate", "plan", "init", "stage"]
    assert resumed.sort_values("candidate")[key].values.tolist() == fresh.sort_values("candidate")[key].values.tolist()


def test_budgeted_resume_after_kill_9(tmp_path):
    """kill -9 of a budgeted search mid-way (a real process), then --resume: the same
    leaderboard and the same spend as an uninterrupted run."""
    cfg = tiny(budget={"full_trainings": 1.5}, candidates=None, training={"epochs": 4, "batch_size": 32})
    cfg_path, out, _ = _kill_9_and_resume(cfg, tmp_path, 4)
    fresh_out = tmp_path / "fresh"  # uninterrupted, in a process like the killed one's (the same torch threads)
    fresh = subprocess.run([sys.executable, "-m", "growsearch.cli", "run", cfg_path, "--out", fresh_out],
                           capture_output=True, text=True, timeout=600)
    assert fresh.returncode == 0, fresh.stderr
    boards = [pd.read_csv(o / "leaderboard.csv").drop(columns=["seconds"]) for o in (out, fresh_out)]
    assert boards[0].to_csv(index=False) == boards[1].to_csv(index=False)
    spent = [json.loads((o / "budget.json").read_text())["spent_flops"] for o in (out, fresh_out)]
    assert spent[0] == spent[1] > 0


@pytest.mark.parametrize("name", ["demo", "cnn", "gpt", "multi_objective"])
def test_example_configs_validate(name):
    from pathlib import Path

    from growsearch.search import DEMO_CONFIG

    path = Path(__file__).parent.parent / "examples" / f"{name}.yaml"
    cfg = load_config(path)
    load_space(cfg.space)
    if name == "demo":
        assert yaml.safe_load(path.read_text()) == DEMO_CONFIG


def test_multi_objective_search(tmp_path):
    cfg = tiny(objectives=["manifold_metric", "params"], sampler={"name": "nsga2", "seed": 0},
               promotion={"policy": "pareto"}, reference=False)
    run_search(load_config(cfg), tmp_path / "run")
    name = json.loads((tmp_path / "run" / "inputs.json").read_text())["study"]  # named after the search
    assert name.startswith("tiny-")
    study = optuna.load_study(study_name=name, storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "run" / "study.journal"))))
    assert len(study.directions) == 2 and len(study.best_trials) >= 1


@pytest.mark.slow
def test_fault_benchmark_kills_and_failures(tmp_path):
    """SIGKILL at screening, promotion, training and report writing, SIGTERM during full
    training, a full disk while saving the best checkpoint and from the start, each then
    resumed; a raising and a diverging candidate: each fault really happened where its
    scenario says (exit -9 / 143 / 1 of the faulty run), nothing lost, nothing duplicated,
    identical to a clean run."""
    from growsearch.bench.faults import run_fault_benchmark

    # the Ray worker kill and signals inside Ray trials are in tests/test_ray.py; the lock,
    # a whole-process full disk and the torn journal in tests/test_trust.py
    result = run_fault_benchmark(tmp_path, ray=False, scenarios=["kill -9", "candidate", "disk full",
                                                                 "SIGTERM during full training (local)"])
    for s in result["scenarios"]:
        assert s["injected"] and s["survived"] and s["lost"] == 0 and s["duplicates"] == 0, s
        if "identical" in s:
            assert s["identical"], s
    codes = {s["scenario"]: s.get("exit_code") for s in result["scenarios"]}
    assert codes == {"kill -9 during screening": -9, "kill -9 during promotion": -9,
                     "kill -9 during full training": -9, "kill -9 while writing the leaderboard": -9,
                     "candidate raises during screening": None, "candidate training diverges (NaN loss)": None,
                     "SIGTERM during full training (local)": 143, "disk full while saving checkpoints": 1,
                     "disk full when the search starts": 1}
    assert result["all_injected"]


def test_fault_benchmark_scenarios_are_chosen_by_name():
    from growsearch.bench.faults import scenario_names, select_scenarios
    from growsearch.errors import ConfigError

    assert select_scenarios(["sigint during screening"]) == ["SIGINT during screening (local)",
                                                             "SIGINT during screening (ray)"]
    assert select_scenarios(["SIGINT during screening"], ray=False) == ["SIGINT during screening (local)"]
    assert select_scenarios(None, extended=False) == scenario_names(extended=False)
    assert len(scenario_names()) == 24 and len(set(scenario_names())) == 24
    with pytest.raises(ConfigError, match="'sigkill' matches no scenario; choose from: kill -9 during"):
        select_scenarios(["disk", "sigkill"])


def test_fault_benchmark_refuses_an_unknown_scenario_before_running(tmp_path, capsys):
    from growsearch.cli import main

    out = tmp_path / "faults.json"
    assert main(["bench", "faults", "--out", str(out), "--workdir", str(tmp_path / "wd"), "--scenario", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("growsearch: error: --scenario: 'nope' matches no scenario") and len(err.splitlines()) == 1
    assert not out.exists() and not (tmp_path / "wd").exists()


def test_no_decision_reads_the_test_split(tmp_path):
    """Same data but adversarial test labels: every decision (ASHA stops, promotion, the
    best, gains) is unchanged; only the reported test figures move."""
    import numpy as np

    from growsearch.data import load_dataset

    digits = load_dataset("digits")
    arrays = {"x_train": digits.x_train.numpy(), "y_train": digits.y_train.numpy(),
              "x_val": digits.x_val.numpy(), "y_val": digits.y_val.numpy(), "x_test": digits.x_test.numpy()}
    runs = {}
    for name, y_test in (("honest", digits.y_test.numpy()), ("adversarial", (digits.y_test.numpy() + 1) % 10)):
        np.savez(tmp_path / f"{name}.npz", **arrays, y_test=y_test, num_classes=10)
        cfg = tiny(base={"pretrain": {"family": "mlp", "dataset": str(tmp_path / f"{name}.npz"), "epochs": 3}},
                   early_stopping={"policy": "successive_halving", "grace_epochs": 1, "reduction_factor": 3},
                   promotion={"policy": "top_k", "k": 3})  # three at the first rung: two are stopped
        runs[name] = run_search(load_config(cfg), tmp_path / name)

    def decisions(result):
        return {r["id"]: (r["stage"], r.get("epochs"), r.get("final_score"),
                          [h["score"] for h in r.get("history", [])]) for r in result.records}

    honest, adversarial = runs["honest"], runs["adversarial"]
    assert decisions(honest) == decisions(adversarial)
    assert honest.best["id"] == adversarial.best["id"]
    trained = [r for r in honest.records if r.get("final_test_score") is not None]
    assert trained and any(r["stage"] == "stopped_early" for r in honest.records)
    worse = {r["id"]: r["final_test_score"] for r in adversarial.records if r.get("final_test_score") is not None}
    assert all(worse[r["id"]] < r["final_test_score"] for r in trained)  # the test split was really changed
    board = pd.read_csv(tmp_path / "honest" / "leaderboard.csv")
    assert {"val_score", "test_score", "gain", "test_gain"} <= set(board.columns)


def test_results_folder_module_sits_below_engine_report_and_tracking():
    """The layers read top-down: report and tracking reach the results folder through
    growsearch.results, never through the search engine (no import circle)."""
    code = ("import sys, growsearch.report, growsearch.tracking\n"
            "loaded = sorted(m for m in sys.modules if m.startswith('growsearch.search'))\n"
            "assert not loaded, loaded\n"
            "from growsearch.results import SearchState\n"
            "import growsearch.search.engine as engine\n"
            "assert engine.SearchState is SearchState\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_the_demo_refuses_an_earlier_versions_folder_in_one_line(tmp_path, capsys):
    from growsearch.cli import main

    out = tmp_path / "demo"
    out.mkdir()
    (out / "config.yaml").write_text(yaml.safe_dump(tiny()))  # an earlier demo: no budget
    before = sorted(p.name for p in out.iterdir())
    assert main(["demo", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("growsearch: error: demo: ") and "without a budget" in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == before


def test_resume_starts_afresh_a_folder_left_by_a_start_that_failed_early(tmp_path):
    """What a start that failed before config.yaml leaves -- the MLflow store with SQLite's
    write-ahead log beside it, the lock -- is no search: --resume starts one there."""
    out = tmp_path / "run"
    out.mkdir()
    for name in ("mlflow.db", "mlflow.db-wal", "mlflow.db-shm", ".lock"):
        (out / name).write_bytes(b"")
    (out / "notes.txt").write_text("mine")  # anything else is not ours: refused, untouched
    with pytest.raises(ConfigError, match="holds no growsearch search"):
        run_search(load_config(tiny(reference=False)), out, resume=True)
    (out / "notes.txt").unlink()
    run_search(load_config(tiny(reference=False)), out, resume=True)
    assert (out / "leaderboard.csv").exists()
