"""The budgeted search (:mod:`growsearch.search.budget`) replayed on a ``bench search`` pool's
recorded curves: the real :class:`~growsearch.search.budget.BudgetedSearch`, its proposals,
brackets, promotions and accounting unchanged, over a space and an executor that serve
what the pool measured.

* :class:`PoolSpace` is a :class:`~growsearch.search.space.SearchSpace` with one categorical
  knob, ``candidate``, whose choices are the pool's candidates (``plan/init``): the largest
  allowed expansion, the Optuna sampler's draws (told the rung-1 validation scores), the
  surrogate's batches and the incumbent's mutations (another choice of the one knob) are all
  pool candidates. It has no constraints: the pool (or its ``max_params`` cut) is the space.
* :class:`ReplayExecutor` screens a candidate by serving its recorded surrogate scores and
  the manifold metric's cost in examples (what the real executor's screen computes whatever
  the surrogate), and trains it by serving its recorded per-epoch validation and test scores
  up to ``TrainJob.until``; a resumed job continues after the epochs already served (no epoch
  counted twice). It keeps its own running total of the FLOPs it served -- screens and
  epochs, in the order the search asked for them -- so the compute when a candidate
  completes is read off it, and a test checks it against the search's own ``spent``.

Each strategy (:data:`BUDGETED`) is one search per seed and budget, seeded with the pool's
seed: same seed, same figures. Regret is read from a search given the benchmark's regret
budget, compute to target from a search given train-all's compute -- two runs, because a
search plans its brackets to its budget (a larger budget is not the smaller one run on).
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from typing import Any

import optuna
import torch

from growsearch.grow import ExpansionPlan
from growsearch.metrics.cost import training_flops
from growsearch.models import ModelConfig
from growsearch.results import SearchState
from growsearch.search.budget import plan_budget, run_budgeted
from growsearch.search.config import (
    BaseSpec,
    BudgetSpec,
    EarlyStoppingSpec,
    ExecutorSpec,
    SamplerSpec,
    SearchConfig,
    TrackingSpec,
)
from growsearch.search.executors import TrainJob, proposal
from growsearch.search.inputs import SEED_SCHEME
from growsearch.search.schedulers import Scheduler
from growsearch.search.space import Knob, SearchSpace
from growsearch.train import TrainRecipe

#: strategy name -> the search's ``surrogate:``
BUDGETED = {"budgeted_manifold": "manifold", "budgeted_params": "params", "budgeted_no_surrogate": "none"}
KNOB = "candidate"


def candidate_key(plan: ExpansionPlan, init: str) -> str:
    """A pool candidate's name, as ``bench search`` records it: ``plan/init``."""
    return f"{plan.describe()}/{init}"


@dataclass
class PoolSpace(SearchSpace):
    """A search space whose one categorical knob picks one of ``candidates`` (name -> (plan, init))."""

    candidates: dict[str, tuple[ExpansionPlan, str]] = field(default_factory=dict)

    @classmethod
    def of(cls, family: str, candidates: dict[str, tuple[dict[str, Any], str]], source: str = "pool") -> PoolSpace:
        """The space over ``candidates``: name (``plan/init``) -> (plan as a dict, init)."""
        plans = {}
        for name, (plan, init) in candidates.items():
            plans[name] = (ExpansionPlan.from_dict(plan), init)
            if candidate_key(plans[name][0], init) != name:
                raise ValueError(f"candidate {name!r} is not its plan {plans[name][0].describe()!r} and init {init!r}")
        return cls(family, {KNOB: Knob(KNOB, choices=list(candidates))}, {}, source, None, plans)

    def suggest(self, trial: optuna.Trial, base: ModelConfig) -> tuple[ExpansionPlan, str]:
        plan, init = self.candidates[self.knobs[KNOB].suggest(trial)]
        return ExpansionPlan.from_dict(plan.to_dict()), init

    def violation(self, base: ModelConfig, plan: ExpansionPlan, example: torch.Tensor) -> str | None:
        return None  # the pool is the space


class ReplayExecutor:
    """An executor (``rescreen`` / ``train``) serving a pool's recorded screens and curves."""

    name = "replay"

    def __init__(self, candidates: list[dict[str, Any]], epochs: int) -> None:
        self.candidates = {c["name"]: c for c in candidates}
        self.epochs = epochs
        self.spent = 0.0  # training FLOPs served so far (screens and epochs, in the order asked)
        self.seconds = 0.0  # the recorded seconds of what was served
        self.served: dict[str, int] = {}  # candidate id -> epochs served
        self.names: dict[str, str] = {}  # candidate id -> pool candidate
        self.screened: list[str] = []  # pool candidates screened, in order
        self.completions: list[dict[str, Any]] = []  # each completed training, with the spend when it completed

    def _candidate(self, record: dict[str, Any]) -> dict[str, Any]:
        return self.candidates[candidate_key(ExpansionPlan.from_dict(record["plan"]), record["init"])]

    def rescreen(self, records: list[dict[str, Any]], proposer: Any) -> None:
        for record in records:
            c = self._candidate(record)
            self.spent += training_flops(c["flops"], c["metric_cost"])
            self.seconds += c["metric_seconds"]
            self.screened.append(c["name"])
            proposer.done(record["trial"], {
                **proposal(record), "stage": "screened", "params": c["params"], "flops": c["flops"],
                "manifold_metric": c["manifold_metric"], "surrogate_parts": {k: float(v) for k, v in
                                                                              c["surrogates"].items()},
                "screen_cost": c["metric_cost"], "screen_seconds": c["metric_seconds"]})

    def train(self, jobs: list[TrainJob], scheduler: Scheduler, on_epoch: Any = None,
              on_record: Any = lambda r: None) -> None:
        for job in jobs:
            if job.plan is None:
                raise ValueError("the replay has no reference run (reference: none)")
            c = self._candidate({"plan": job.plan, "init": job.init})
            start = self.served.get(job.id, 0)
            self.names[job.id] = c["name"]
            if (job.resume is None) != (start == 0):
                raise ValueError(f"{job.id}: resume {job.resume!r} after {start} epochs served")
            end = min(job.until or self.epochs, self.epochs)
            curve, stopped = c["curve"], False
            for e in range(start, end):
                point, before = curve[e], curve[e - 1] if e else {"flops": 0.0, "seconds": 0.0}
                self.spent += point["flops"] - before["flops"]
                self.seconds += point["seconds"] - before["seconds"]
                self.served[job.id] = e + 1
                if on_epoch is not None:
                    on_epoch(job.id, point)
                if job.schedule and not scheduler.on_epoch(job.id, e + 1, point["score"]):
                    stopped = True
                    break
            done = self.served.get(job.id, start)
            last = curve[done - 1]
            stage = "completed" if done >= self.epochs else "stopped_early" if stopped else "paused"
            if stage == "completed":
                self.completions.append({"name": c["name"], "spent": self.spent, "seconds": self.seconds,
                                         "score": last["score"], "test_score": last["test_score"]})
            on_record({"id": job.id, "stage": stage, "final_score": last["score"],
                       "final_test_score": last["test_score"], "epochs": done,
                       "train_cost": last["forward_backward"], "checkpoint": f"candidates/{job.id}",
                       "history": [dict(p) for p in curve[:done]], "train_seconds": last["seconds"]})

    def close(self) -> None:
        pass


class _Quiet:
    def stage(self, name: str, total: int) -> None: ...

    def advance(self, done: int, text: str = "") -> None: ...


@dataclass
class BudgetContext:
    """What the budget's plan needs besides the curves: the pool's base architecture, one
    input example and the examples per epoch (meta device: no weights)."""

    family: str
    base: ModelConfig
    example: torch.Tensor
    n_train: int
    plans: dict[str, tuple[dict[str, Any], str]]  # candidate name (``plan/init``) -> (plan, init)


def pool_context(pool: Any) -> BudgetContext:
    """The :class:`BudgetContext` of a ``bench`` pool (its base as pretrain builds it, or its checkpoint's)."""
    from growsearch.data import load_dataset
    from growsearch.models import config_from_spec
    from growsearch.pretrain import default_config

    task = load_dataset(pool.dataset)
    if pool.checkpoint is not None:
        from growsearch.checkpoint import load_checkpoint

        base = config_from_spec(load_checkpoint(pool.checkpoint)[1])
    else:
        base = default_config(pool.family, task)
    plans = {candidate_key(ExpansionPlan.from_dict(plan), init): (plan, init) for plan, init in pool.candidates()}
    return BudgetContext(pool.family, base, task.x_train[:1], len(task.x_train), plans)


def run_budget(candidates: list[dict[str, Any]], ctx: BudgetContext, epochs: int, budget: float, surrogate: str,
               seed: int, grace: int, eta: int) -> dict[str, Any]:
    """One budgeted search (``budget`` training FLOPs, ``surrogate:``, sampler seed ``seed``)
    over ``candidates``' recorded curves, in a temporary results folder, tracking off.
    Returns the search's summary (``budget.json``) and what the executor served."""
    cfg = SearchConfig(base=BaseSpec(checkpoint="<pool>"), space="<pool>", surrogate=surrogate,
                       sampler=SamplerSpec("tpe", seed), training=TrainRecipe(epochs=epochs),
                       early_stopping=EarlyStoppingSpec("successive_halving", grace, eta), reference=False,
                       seed=seed, executor=ExecutorSpec(name="local"), tracking=TrackingSpec(enabled=False),
                       budget=BudgetSpec(flops=budget))
    space = PoolSpace.of(ctx.family, {c["name"]: ctx.plans[c["name"]] for c in candidates})
    plan = plan_budget(cfg, space, ctx.base, ctx.example, ctx.n_train)
    executor = ReplayExecutor(candidates, epochs)
    with tempfile.TemporaryDirectory(prefix="budget-replay-") as out:
        summary = run_budgeted(cfg, plan, space, ctx.base, ctx.example, executor, SearchState(out), _Quiet(), None,
                               "replay", SEED_SCHEME)
    if not math.isclose(summary["spent_flops"], executor.spent, rel_tol=1e-9):  # the search's account is the curves'
        raise RuntimeError(f"the search counted {summary['spent_flops']:.6g} FLOPs, the curves it consumed "
                           f"{executor.spent:.6g}")
    return {"summary": summary, "spent": executor.spent, "seconds": executor.seconds,
            "completions": executor.completions, "screened": executor.screened,
            "served": {executor.names[cid]: epochs for cid, epochs in executor.served.items()}}


def replay_budgeted(candidates: list[dict[str, Any]], ctx: BudgetContext, epochs: int, surrogate: str, seed: int,
                    grace: int, eta: int, target: float, regret_budget: float, full_budget: float) -> dict[str, Any]:
    """One budgeted strategy on one seed's curves, with ``search efficiency``'s figures:
    compute and seconds until a candidate reaching ``target`` (test score) completed, in a
    search given ``full_budget`` (train-all's compute); the test score of the best-validation
    candidate completed by a search given ``regret_budget``."""
    full = run_budget(candidates, ctx, epochs, full_budget, surrogate, seed, grace, eta)
    small = run_budget(candidates, ctx, epochs, regret_budget, surrogate, seed, grace, eta)
    hit = next((c for c in full["completions"] if c["test_score"] >= target), None)
    picked = max(small["completions"], key=lambda c: c["score"], default=None)  # first on equal scores
    return {"compute_to_target": None if hit is None else hit["spent"],
            "seconds_to_target": None if hit is None else hit["seconds"],
            "reach_rate": float(hit is not None), "orders": 1, "orders_replayed": 1,
            "total_compute": full["spent"], "total_seconds": full["seconds"],
            "picked_within_budget": None if picked is None else picked["test_score"],
            "picked": None if picked is None else picked["name"],
            "spent_at_regret_budget": small["spent"], "surrogate": surrogate,
            "candidates_trained": {"full_budget": len(full["served"]), "regret_budget": len(small["served"])},
            "completed": {"full_budget": [c["name"] for c in full["completions"]],
                          "regret_budget": [c["name"] for c in small["completions"]]},
            "surrogate_tau": _last_tau(full["summary"]), "wins": full["summary"]["wins"]}


def _last_tau(summary: dict[str, Any]) -> float | None:
    taus = [t["tau"] for t in summary.get("surrogate_tau", []) if t["tau"] is not None and math.isfinite(t["tau"])]
    return taus[-1] if taus else None
