"""The headline benchmark: for the compute a user can spend, which strategy ends with the
better model -- growsearch, or what they would do without it?

Five strategies, each under the same constraint (the ``max_params``/``max_flops`` of the
family's bundled search space, ``search_spaces/<family>.yaml``), the same training recipe
and the same data, over several seeds (seed = model init, data order, growth and sampler
seed; the pretrained base is the pool's one base). Every model of every strategy -- a
scratch model, a grown candidate, the base's reference run -- trains with the pool's
recipe unchanged, learning rate included (no rate is tuned per arm; grown models once
trained at lr x 2, which favoured the growth strategies, and no longer do):

* ``scratch_largest`` -- train the largest architecture the constraint allows from
  scratch (what most people do). Its full training's compute is the unit of the budgets.
* ``scratch_search`` -- what an Optuna user writes without growsearch: Optuna's
  ``TPESampler`` over the same space's architectures (the space's own ``suggest``; the
  init knob dropped), each trained from scratch, Optuna's ``SuccessiveHalvingPruner``
  (ASHA, the product's grace and reduction factor) on the validation score; trials run
  until the compute reaches the horizon (the most any other strategy spends, at least
  scratch-largest's full training). An architecture proposed again is told its earlier
  value without training it twice.
* ``grow_largest`` -- grow the base into that largest architecture with the default init
  and train it (the engine's :func:`~growsearch.search.trials.train_candidate`); no search.
* ``growsearch`` -- the product as shipped: :func:`~growsearch.search.engine.run_search`
  with the config defaults (sampler, candidates, surrogate, promotion, early stopping,
  the base's reference run) on the in-process executor, only ``training`` set to the
  pool's recipe and ``seed`` to the run's seed.
* ``growsearch_random_pruning`` -- the same engine with the surrogate taken out: as many
  candidates as the promotion keeps (``promotion.k``) are proposed by the sampler with
  nothing to learn from (its random start-up phase; they are the first proposals of the
  ``growsearch`` run of the same seed) and all trained under the same early stopping. The
  surrogate's screening compute is not counted (without a surrogate it is not spent).

Nothing is replayed: every strategy really trains its models here; the growsearch runs
are observed through the executor's per-epoch callback, so their timeline is the
engine's own order of work.

Compute is **training FLOPs** (:func:`growsearch.metrics.cost.training_flops`: forward +
backward = 3 x the measured forward FLOPs per example) of everything a strategy spends:
screening (the surrogate's forward+backward-equivalent examples on the grown model),
every training epoch (stopped runs included) and the base's reference run. Evaluation
passes and growth itself are not counted, for any strategy. The base's pretraining is
reported twice: as a sunk cost (the user already has the model: the base is available
at compute 0) and counted in (every growth strategy's curve shifted by it).

An anytime curve has one point per evaluated model (every epoch of every training is a
model the user could keep): the compute spent so far and the **test** score of the
model with the best **validation** score so far (decisions never see the test split;
ties keep the earlier model). Before a strategy has any model its score is ``None``.
A curve is a step function: its score at budget ``b`` is that of its last point with
compute <= ``b``. Per strategy and seed the JSON holds the curve; ``at_budget`` holds
the mean over seeds at 25%, 50% and 100% of scratch-largest's full training compute
(base as sunk cost), ``at_budget_with_pretraining`` the same with the base's pretraining
counted in, and ``ratio_to_scratch_largest_final`` the compute at which the strategy's
mean curve first reaches scratch-largest's mean final score, divided by scratch-largest's
full training compute (``None``: never reached).

**Growsearch given a budget** (issue 21; ``budgeted`` in the JSON, left out with
``budgets=()``). For each budget ``B`` in :data:`BUDGETED` (fractions of scratch-largest's
full training), one run per seed of the product with ``budget: {full_trainings: B}``
(:mod:`growsearch.search.budget`), everything else as ``growsearch``. The budget path's
unit -- one full training (the config's recipe, here the pool's) of the largest candidate
the space allows (the same :func:`~growsearch.search.budget.largest_allowed`) -- is this
benchmark's unit exactly: the recipes are in epochs, so both are ``3 x forward FLOPs x
epochs x training examples`` of the same plan (``budgeted.unit_check`` records both). **One
anytime run is not equivalent to separate runs**: the budget shapes the search (each
bracket's first rung gets a share of what is left, the bracket's size and each slot's
allowance follow from it, the reference run's cost is reserved from the start, the run
ends when what is left no longer pays a rung), so the run given 2.0 holds, at 0.5, a
different model than the run given 0.5; each budget is its own run. Its anytime curve is
recorded like the others (every screen, every epoch, stopped ones included, the reference
run, in the engine's order: screens interleave with trainings) and its score is read **at
its own budget** (``at_own_budget``; the run never spends more: ``spent_vs_budget``).
Ablations, the same budgeted runs with the surrogate changed:

* ``growsearch_budget_surrogate_params`` -- ``surrogate: params`` (the config's own option:
  the bigger candidate ranks first). Screening still computes the manifold metric (the
  product records it for the leaderboard), so it still costs what ``growsearch_budget``'s
  screens cost, and it is counted.
* ``growsearch_budget_no_surrogate`` -- ``surrogate: none`` (the config's option with a
  budget): the proposal mix without the surrogate source (the largest allowed expansion
  first, then the Optuna sampler told the observed rung-1 scores and mutations of the
  incumbent, weighted by their promotions as in the product) and no rung 0 (nothing is
  scored, nothing is spent on screening). Everything else is the product's loop.

Every budgeted arm runs with the product's defaults under a budget: no ``candidates:`` cap
(the budget decides) and no reference run (it buys no better model; a user who wants the
``gain`` column sets ``reference: true`` and pays for it).

The other strategies are read at each budget from their own curves; at a budget past
where a strategy stops (scratch-largest, grow-largest and the unbudgeted growsearch runs
end; they hold their last model), its last model counts. ``scratch_search`` alone would
use more: past its horizon it is read from ``scratch_search_extended``, the same search
run again with the horizon at the largest budget (its curve up to the old horizon is the
same run's; the five strategies' own runs and keys are untouched). ``goals.growsearch_budget``
holds the issue's goals for the budgeted arm at every budget.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import optuna
import torch

from growsearch import __version__
from growsearch.bench.pools import Pool
from growsearch.bench.predictors import pool_base_model, pretrain_base
from growsearch.checkpoint import save_checkpoint
from growsearch.data import Task, load_dataset
from growsearch.errors import ConfigError
from growsearch.grow import DEFAULT_INIT, ExpansionPlan
from growsearch.metrics.cost import flops_per_example, training_flops
from growsearch.models import ModelConfig, config_from_spec, count_params
from growsearch.search.budget import allowed_grid, largest_allowed
from growsearch.search.config import SearchConfig, load_config
from growsearch.search.engine import run_search
from growsearch.search.executors import LocalExecutor
from growsearch.search.space import SearchSpace, load_space, planned_config
from growsearch.search.trials import SearchContext, train_candidate
from growsearch.train import StopTraining, evaluate, task_score, train

STRATEGIES = ("scratch_largest", "scratch_search", "grow_largest", "growsearch", "growsearch_random_pruning")
BUDGETS = (0.25, 0.5, 1.0)  # fractions of scratch-largest's full training compute
#: The budgets growsearch is given (``budget: {full_trainings: B}``), one run each.
BUDGETED = (0.25, 0.5, 1.0, 2.0)
#: The budgeted arms: the product, and the ablations with another surrogate or none.
BUDGET_ARMS = ("growsearch_budget", "growsearch_budget_surrogate_params", "growsearch_budget_no_surrogate")
_ARM_SURROGATE = {"growsearch_budget": None, "growsearch_budget_surrogate_params": "params",
                  "growsearch_budget_no_surrogate": "none"}
DEFAULT_SEEDS = (0, 1, 2)
#: Proposals in a row that repeat an earlier architecture before scratch_search stops.
MAX_REPEATS = 200

Event = dict[str, Any]  # {"stage", "compute" (FLOPs spent), "model" (label or None), "val", "test"}
Point = dict[str, Any]  # {"compute" (cumulative FLOPs), "score" (test), "val", "model"}


# -- curve accounting (pure functions) ---------------------------------------------------
def anytime_curve(events: list[Event], start: Point | None = None) -> list[Point]:
    """Cumulative compute and the incumbent (best validation score so far) after each event
    that yields a model; ``start`` is a model available before any compute (the base)."""
    curve: list[Point] = [dict(start)] if start is not None else []
    best = dict(start) if start is not None else None
    spent = 0.0
    for ev in events:
        spent += ev["compute"]
        if ev.get("model") is None:
            continue
        if best is None or ev["val"] > best["val"]:
            best = {"score": ev["test"], "val": ev["val"], "model": ev["model"]}
        curve.append({"compute": spent, "score": best["score"], "val": best["val"], "model": best["model"]})
    return curve


def score_at(curve: list[Point], budget: float) -> float | None:
    """The curve's score at ``budget``: its last point with compute <= budget (a step
    function; a relative 1e-9 slack absorbs float rounding of sums); None before any."""
    value = None
    for point in curve:
        if point["compute"] <= budget * (1 + 1e-9):
            value = point["score"]
        else:
            break
    return value


def shifted(curve: list[Point], offset: float) -> list[Point]:
    """The curve with ``offset`` compute spent before it (the base's pretraining)."""
    return [{**p, "compute": p["compute"] + offset} for p in curve]


def mean_curve(curves: list[list[Point]]) -> list[tuple[float, float | None]]:
    """``(compute, mean score over curves)`` at every compute where some curve steps; the
    mean is None where a curve has no model yet."""
    grid = sorted({p["compute"] for c in curves for p in c})
    out = []
    for x in grid:
        values = [score_at(c, x) for c in curves]
        out.append((x, None if any(v is None for v in values) else statistics.mean(values)))
    return out


def first_reach(points: list[tuple[float, float | None]], target: float) -> float | None:
    """The first compute at which a mean curve reaches ``target``; None if never."""
    for x, v in points:
        if v is not None and v >= target - 1e-12:
            return x
    return None


def mean_at(points: list[tuple[float, float | None]], budget: float) -> float | None:
    """A mean curve (see :func:`mean_curve`) read as a step function at ``budget``."""
    value = None
    for x, v in points:
        if x <= budget * (1 + 1e-9):
            value = v
        else:
            break
    return value


def _mean(values: list[float | None]) -> float | None:
    return None if not values or any(v is None for v in values) else statistics.mean(values)


def summarize(runs: dict[str, list[dict[str, Any]]], unit: float, pretrain: float) -> dict[str, Any]:
    """``at_budget``, ``at_budget_with_pretraining`` and ``ratio_to_scratch_largest_final``
    from every strategy's per-seed curves; ``unit`` is scratch-largest's full training
    compute, ``pretrain`` the base's pretraining compute."""
    grown = {"grow_largest", "growsearch", "growsearch_random_pruning"}
    at, at_pre, at_seed, ratio = {}, {}, {}, {}
    target = _mean([score_at(r["curve"], unit) for r in runs["scratch_largest"]])
    for name, seeds in runs.items():
        curves = [r["curve"] for r in seeds]
        with_pre = [shifted(c, pretrain) if name in grown else c for c in curves]
        at_seed[name] = {str(b): [score_at(c, b * unit) for c in curves] for b in BUDGETS}
        at[name] = {str(b): _mean(at_seed[name][str(b)]) for b in BUDGETS}
        at_pre[name] = {str(b): _mean([score_at(c, b * unit) for c in with_pre]) for b in BUDGETS}
        reach = None if target is None else first_reach(mean_curve(curves), target)
        ratio[name] = None if reach is None else reach / unit
    return {"scratch_largest_final": target, "at_budget": at, "at_budget_with_pretraining": at_pre,
            "at_budget_per_seed": at_seed, "ratio_to_scratch_largest_final": ratio}


def goals(summary: dict[str, Any], margin: float) -> dict[str, Any]:
    """The issue's goals, met or not, with the numbers: growsearch >= every other strategy
    at every budget; >= ``margin`` over scratch_largest at every budget (base sunk); reaches
    scratch_largest's final with <= 50% of its compute."""
    at = summary["at_budget"]
    ours = at["growsearch"]
    worse = [{"budget": b, "strategy": name, "growsearch": ours[b], "other": at[name][b]}
             for b in ours for name in at if name != "growsearch"
             if at[name][b] is not None and (ours[b] is None or ours[b] < at[name][b])]
    over = {b: None if ours[b] is None or at["scratch_largest"][b] is None else ours[b] - at["scratch_largest"][b]
            for b in ours}
    ratio = summary["ratio_to_scratch_largest_final"]["growsearch"]
    return {"growsearch_best_at_every_budget": {"met": not worse, "behind": worse},
            "margin_over_scratch_largest": {"met": all(v is not None and v >= margin - 1e-12 for v in over.values()),
                                            "required": margin, "by_budget": over},
            "half_compute_to_scratch_final": {"met": ratio is not None and ratio <= 0.5, "ratio": ratio}}


# -- the setting shared by every strategy -----------------------------------------------
def architectures_only(space: SearchSpace) -> SearchSpace:
    """``space`` without its ``init`` knob: the architectures it proposes."""
    return dataclasses.replace(space, knobs={k: v for k, v in space.knobs.items() if k != "init"})


def grid(space: SearchSpace, base: ModelConfig) -> list[ExpansionPlan]:
    """Every distinct architecture the space can propose (:func:`growsearch.search.budget.allowed_grid`)."""
    return [plan for _, plan in allowed_grid(space, base)]


def largest_plan(space: SearchSpace, base: ModelConfig, example: torch.Tensor) -> ExpansionPlan:
    """The plan with the most parameters that the space's constraints allow -- the one the
    budgeted search also proposes first (:func:`growsearch.search.budget.largest_allowed`)."""
    return largest_allowed(space, base, example)[1]


@dataclasses.dataclass
class Setting:
    """Everything the strategies share; small enough to ship to a worker process."""

    pool: Pool
    base_state: dict[str, torch.Tensor]
    base_spec: dict[str, Any]
    pretrain_record: dict[str, float]
    space_path: str
    largest_plan: dict[str, Any] = dataclasses.field(default_factory=dict)  # see :func:`largest_plan`

    def task(self) -> Task:
        return load_dataset(self.pool.dataset)

    def base_cfg(self) -> ModelConfig:
        return config_from_spec(self.base_spec)

    def space(self) -> SearchSpace:
        return load_space(self.space_path)

    def flops(self, cfg: ModelConfig, task: Task) -> int:
        """Training FLOPs per example of ``cfg`` (3 x its measured forward FLOPs)."""
        with torch.device("meta"):
            model = cfg.build()
        return int(training_flops(flops_per_example(model, task.x_train[:1].to("meta")), 1))

    def largest(self) -> ExpansionPlan:
        return ExpansionPlan.from_dict(self.largest_plan)


def _epoch_events(task: Task, per_example: float, label: str, stage: str,
                  sink: list[Event]) -> Callable[[dict[str, float]], None]:
    """A training callback appending one event per epoch (compute: the epoch's examples)."""
    last = [0.0]

    def on_epoch(rec: dict[str, float]) -> None:
        fb = rec["forward_backward"]
        delta = fb - last[0] if fb > last[0] else fb  # a resumed run may count from zero again
        last[0] = fb
        sink.append({"stage": stage, "compute": delta * per_example, "model": f"{label}@{int(rec['epoch'])}",
                     "val": task_score(rec, task, "val"), "test": task_score(rec, task, "test")})
    return on_epoch


# -- the strategies ----------------------------------------------------------------------
def run_scratch_largest(setting: Setting, seed: int, workdir: Path) -> list[Event]:
    task = setting.task()
    cfg = planned_config(setting.base_cfg(), setting.largest())
    torch.manual_seed(seed)
    model = cfg.build()
    events: list[Event] = []
    train(model, task, setting.pool.recipe, seed=seed,
          callbacks=[_epoch_events(task, setting.flops(cfg, task), "largest", "training", events)])
    return events


def run_grow_largest(setting: Setting, seed: int, workdir: Path) -> list[Event]:
    task = setting.task()
    plan = setting.largest()
    per_example = setting.flops(planned_config(setting.base_cfg(), plan), task)
    ctx = SearchContext(setting.base_spec, setting.base_state, setting.pool.dataset, setting.pool.recipe,
                        _product_defaults().manifold, seed, str(workdir))
    events: list[Event] = []
    spy = _epoch_events(task, per_example, f"{plan.describe()}/{DEFAULT_INIT}", "training", events)
    record = train_candidate(ctx, "grow_largest", plan.to_dict(), DEFAULT_INIT,
                             on_epoch=lambda rec, model, spec: spy(rec), device="cpu",
                             checkpoint_dir=workdir / "grow_largest")
    if record["stage"] == "failed":
        raise RuntimeError(f"grow_largest failed: {record['reason']}")
    return events


def run_scratch_search(setting: Setting, seed: int, workdir: Path, horizon: float) -> list[Event]:
    task = setting.task()
    base = setting.base_cfg()
    space = architectures_only(setting.space())
    es = _product_defaults().early_stopping
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True),
        pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=es.grace_epochs,
                                                      reduction_factor=es.reduction_factor))
    example = task.x_train[:1]
    events: list[Event] = []
    outcome: dict[str, tuple[str, float | None]] = {}  # architecture -> (state, value) of its training
    spent, repeats = 0.0, 0
    while spent < horizon and repeats < MAX_REPEATS:
        trial = study.ask()
        plan, _ = space.suggest(trial, base)
        if space.violation(base, plan, example) is not None:  # rejected before any compute
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            repeats += 1
            continue
        name = plan.describe()
        if name in outcome:  # the same architecture again: its earlier result, no new training
            state, value = outcome[name]
            study.tell(trial, value if state == "complete" else None,
                       state=optuna.trial.TrialState.COMPLETE if state == "complete"
                       else optuna.trial.TrialState.PRUNED)
            repeats += 1
            continue
        repeats = 0
        cfg = planned_config(base, plan)
        record = _epoch_events(task, setting.flops(cfg, task), f"scratch:{name}", "training", events)
        last_val = [None]

        def report(rec: dict[str, float], trial: optuna.Trial = trial, record: Any = record,
                   last_val: list = last_val) -> None:
            nonlocal spent
            record(rec)
            spent += events[-1]["compute"]
            last_val[0] = events[-1]["val"]
            trial.report(events[-1]["val"], int(rec["epoch"]))
            if spent >= horizon or trial.should_prune():
                raise StopTraining

        torch.manual_seed(seed)
        result = train(cfg.build(), task, setting.pool.recipe, seed=seed, callbacks=[report])
        if result.stopped_early:
            outcome[name] = ("pruned", None)
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            outcome[name] = ("complete", last_val[0])
            study.tell(trial, last_val[0])
    return events


class _Observed(LocalExecutor):
    """The in-process executor, also keeping every per-epoch record in the order the
    engine trained them (the growsearch runs' timeline)."""

    def __init__(self, ctx: SearchContext, device: str = "cpu") -> None:
        super().__init__(ctx, device)
        self.epochs: list[tuple[str, dict[str, float]]] = []

    def train(self, jobs: Any, scheduler: Any, on_epoch: Any = None, on_record: Any = lambda r: None) -> None:
        def spy(cid: str, rec: dict[str, float]) -> None:
            self.epochs.append((cid, dict(rec)))
            if on_epoch is not None:
                on_epoch(cid, rec)

        super().train(jobs, scheduler, spy, on_record)


def _product_defaults() -> SearchConfig:
    return load_config({"base": {"checkpoint": "-"}, "space": "-"})


def product_config(setting: Setting, seed: int, base_dir: Path, random_pruning: bool,
                   budget: float | None = None, surrogate: str | None = None) -> SearchConfig:
    """The search config of the growsearch strategies: the shipped defaults, with the pool's
    base, space, dataset and recipe, and ``seed`` for growth, training and the sampler;
    ``budget`` (full trainings) adds ``budget: {full_trainings: budget}``, ``surrogate`` sets
    ``surrogate:`` (``"none"`` with a budget: no surrogate)."""
    data: dict[str, Any] = {
        "base": {"checkpoint": str(base_dir)}, "space": setting.space_path, "dataset": setting.pool.dataset,
        "training": setting.pool.recipe.to_dict(), "seed": seed, "sampler": {"seed": seed},
        "executor": {"name": "local", "device": "cpu"}, "tracking": {"enabled": False}}
    if random_pruning:
        k = _product_defaults().promotion.k
        data.update(candidates=k, promotion={"policy": "top_k", "k": k})
    if budget is not None:
        data["budget"] = {"full_trainings": float(budget)}
    if surrogate is not None:
        data["surrogate"] = surrogate
    return load_config(data)


def run_growsearch(setting: Setting, seed: int, workdir: Path, random_pruning: bool = False) -> list[Event]:
    task = setting.task()
    base_dir = workdir / "base"
    if not (base_dir / "spec.json").exists():
        save_checkpoint(base_dir, pool_base_model(setting.base_state, setting.base_spec), setting.base_spec,
                        {"dataset": setting.pool.dataset})
    cfg = product_config(setting, seed, base_dir, random_pruning)
    observed: list[_Observed] = []

    def make_executor(ctx: SearchContext, _cfg: SearchConfig) -> _Observed:
        observed.append(_Observed(ctx, "cpu"))
        return observed[0]

    out = workdir / ("random_pruning" if random_pruning else "growsearch")
    result = run_search(cfg, out, make_executor=make_executor)
    records = {r["id"]: r for r in result.records}
    events: list[Event] = []
    if not random_pruning:  # screening: every candidate, before any training
        for r in result.records:
            if r.get("screen_cost") is not None:
                events.append({"stage": "screening", "compute": training_flops(r["flops"], r["screen_cost"]),
                               "model": None})
    observe = _engine_epochs(setting, task, records, events)
    for cid, rec in observed[0].epochs:
        observe(cid, rec)
    return events


def _engine_epochs(setting: Setting, task: Task, records: dict[str, dict[str, Any]],
                   events: list[Event]) -> Callable[[str, dict[str, float]], None]:
    """``observe(cid, epoch record)``: appends the engine's training epochs (a candidate's or the
    base's reference run) to ``events``, each candidate's compute counted at its own FLOPs."""
    base_flops = setting.flops(setting.base_cfg(), task)
    spies: dict[str, Callable[[dict[str, float]], None]] = {}

    def observe(cid: str, rec: dict[str, float]) -> None:
        if cid not in spies:
            ref = cid == "base"
            per_example = base_flops if ref else training_flops(records[cid]["flops"], 1)
            label = "base (reference)" if ref else f"{records[cid]['plan_name']}/{records[cid]['init']}"
            spies[cid] = _epoch_events(task, per_example, label, "reference" if ref else "training", events)
        spies[cid](rec)
    return observe


class _Timeline(_Observed):
    """The observed executor, also keeping every screen in the engine's order: the budgeted
    search interleaves screens (rung 0) with trainings."""

    def __init__(self, ctx: SearchContext, device: str = "cpu") -> None:
        super().__init__(ctx, device)
        self.order: list[tuple[str, str]] = []  # ("screen", candidate) or ("epoch", index into self.epochs)

    def rescreen(self, records: list[dict[str, Any]], proposer: Any) -> None:
        self.order += [("screen", r["id"]) for r in records]
        super().rescreen(records, proposer)

    def train(self, jobs: Any, scheduler: Any, on_epoch: Any = None, on_record: Any = lambda r: None) -> None:
        def spy(cid: str, rec: dict[str, float]) -> None:
            self.order.append(("epoch", str(len(self.epochs) - 1)))  # _Observed appended it just before
            if on_epoch is not None:
                on_epoch(cid, rec)

        super().train(jobs, scheduler, spy, on_record)


def run_growsearch_budget(setting: Setting, seed: int, workdir: Path, budget: float,
                          surrogate: str | None = None) -> tuple[list[Event], dict[str, Any]]:
    """The product given ``budget`` full trainings (``surrogate``: None, the default; a
    surrogate name; ``"none"``, no surrogate): its events in the engine's order and its
    ``budget.json`` (what the search itself counted)."""
    task = setting.task()
    base_dir = workdir / "base"
    if not (base_dir / "spec.json").exists():
        save_checkpoint(base_dir, pool_base_model(setting.base_state, setting.base_spec), setting.base_spec,
                        {"dataset": setting.pool.dataset})
    cfg = product_config(setting, seed, base_dir, False, budget=budget, surrogate=surrogate)
    observed: list[_Timeline] = []

    def make_executor(ctx: SearchContext, _cfg: SearchConfig) -> _Timeline:
        observed.append(_Timeline(ctx, "cpu"))
        return observed[0]

    out = workdir / f"budget-{surrogate or 'default'}-{budget:g}"
    result = run_search(cfg, out, make_executor=make_executor)
    summary = json.loads((out / "budget.json").read_text())
    records = {r["id"]: r for r in result.records}
    timeline = observed[0]
    events: list[Event] = []
    observe = _engine_epochs(setting, task, records, events)
    for kind, key in timeline.order:
        if kind == "screen":
            r = records.get(key) or {}
            if r.get("screen_cost"):  # a failed screen spends nothing the search counts; no surrogate: nothing
                events.append({"stage": "screening", "compute": training_flops(r["flops"], r["screen_cost"]),
                               "model": None})
            continue
        observe(*timeline.epochs[int(key)])
    return events, summary


def _base_point(setting: Setting) -> Point:
    """The base as a model the user has before spending anything."""
    task = setting.task()
    model = pool_base_model(setting.base_state, setting.base_spec)
    record = {}
    for split in ("val", "test"):
        scores = evaluate(model, *task.split(split))
        record.update({f"{split}_loss": scores["loss"], f"{split}_accuracy": scores["accuracy"]})
    return {"compute": 0.0, "score": task_score(record, task, "test"), "val": task_score(record, task, "val"),
            "model": "base"}


def run_seed(setting: Setting, seed: int, strategies: tuple[str, ...] = STRATEGIES,
             progress: Callable[[str], None] | None = None) -> dict[str, dict[str, Any]]:
    """Every strategy in ``strategies`` for one seed: ``{strategy: {events, curve, ...}}``.
    ``scratch_search`` runs last, up to the most compute any other strategy spent (at
    least scratch-largest's full training)."""
    torch.set_num_threads(1)
    base = _base_point(setting)
    out: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="growsearch-headline-") as tmp:
        work = Path(tmp)
        runners: dict[str, Callable[[], list[Event]]] = {
            "scratch_largest": lambda: run_scratch_largest(setting, seed, work),
            "grow_largest": lambda: run_grow_largest(setting, seed, work),
            "growsearch": lambda: run_growsearch(setting, seed, work),
            "growsearch_random_pruning": lambda: run_growsearch(setting, seed, work, random_pruning=True),
        }
        for name in [s for s in STRATEGIES if s in strategies and s != "scratch_search"]:
            start = time.perf_counter()
            events = runners[name]()
            out[name] = _run_record(seed, events, None if name == "scratch_largest" else base, start)
            if progress is not None:
                progress(name)
        if "scratch_search" in strategies:
            task = setting.task()
            full = setting.flops(planned_config(setting.base_cfg(), setting.largest()), task) * \
                _full_examples(setting, task)
            horizon = max([full, *(r["total_compute"] for r in out.values())])
            start = time.perf_counter()
            events = run_scratch_search(setting, seed, work, horizon)
            out["scratch_search"] = _run_record(seed, events, None, start) | {"horizon": horizon}
            if progress is not None:
                progress("scratch_search")
    return {name: out[name] for name in STRATEGIES if name in out}


def run_seed_budgeted(setting: Setting, seed: int, budgets: tuple[float, ...], horizon: float,
                      progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The budgeted arms for one seed, each budget its own run: ``{"arms": {arm: {str(B):
    record}}, "scratch_search_extended": record or None}``; ``horizon`` is the seed's
    ``scratch_search`` horizon (re-run with the horizon at the largest budget when that is
    past it)."""
    torch.set_num_threads(1)
    task = setting.task()
    unit = setting.flops(planned_config(setting.base_cfg(), setting.largest()), task) * _full_examples(setting, task)
    base = _base_point(setting)
    arms: dict[str, dict[str, Any]] = {arm: {} for arm in BUDGET_ARMS}
    extended = None
    with tempfile.TemporaryDirectory(prefix="growsearch-headline-budget-") as tmp:
        work = Path(tmp)
        for arm in BUDGET_ARMS:
            for b in budgets:
                start = time.perf_counter()
                events, summary = run_growsearch_budget(setting, seed, work, b, _ARM_SURROGATE[arm])
                record = _run_record(seed, events, base, start)
                record.update(budget=b, budget_flops=summary["budget_flops"], spent_flops=summary["spent_flops"],
                              search_unit_flops=summary["unit_flops"], screened=summary["screened"],
                              brackets=len(summary["brackets"]), weights=summary["weights"], wins=summary["wins"],
                              surrogate_tau=summary["surrogate_tau"])
                arms[arm][str(b)] = record
                if progress is not None:
                    progress(f"{arm} at {b:g}")
        top = max(budgets) * unit
        if top > horizon * (1 + 1e-9):
            start = time.perf_counter()
            events = run_scratch_search(setting, seed, work, top)
            extended = _run_record(seed, events, None, start) | {"horizon": top}
            if progress is not None:
                progress("scratch_search (extended)")
    return {"arms": arms, "scratch_search_extended": extended}


def summarize_budgeted(runs: dict[str, list[dict[str, Any]]], budgeted: list[dict[str, Any]],
                       budgets: tuple[float, ...], unit: float, pretrain: float) -> dict[str, Any]:
    """The budgeted arms' figures (``budgeted`` holds one :func:`run_seed_budgeted` result per
    seed): each arm's mean score at its own budget (base sunk; with the base's pretraining
    counted in), per seed, the most any seed spent over its budget, and the compute at which
    the arm's mean curve reaches scratch-largest's final; the five strategies read at every
    budget (``scratch_search`` past its horizon: the extended run)."""
    target = _mean([score_at(r["curve"], unit) for r in runs["scratch_largest"]])
    arms: dict[str, Any] = {}
    for arm in BUDGET_ARMS:
        row: dict[str, Any] = {"at_own_budget": {}, "at_own_budget_per_seed": {},
                               "at_own_budget_with_pretraining": {}, "spent_vs_budget": {},
                               "search_spent_vs_budget": {}, "ratio_to_scratch_largest_final": {}, "runs": {}}
        for b in budgets:
            key = str(b)
            seeds = [s["arms"][arm][key] for s in budgeted]
            curves = [r["curve"] for r in seeds]
            per_seed = [score_at(c, b * unit) for c in curves]
            row["runs"][key] = seeds
            row["at_own_budget_per_seed"][key] = per_seed
            row["at_own_budget"][key] = _mean(per_seed)
            row["at_own_budget_with_pretraining"][key] = _mean([score_at(shifted(c, pretrain), b * unit)
                                                                for c in curves])
            row["spent_vs_budget"][key] = max(r["total_compute"] / r["budget_flops"] for r in seeds)
            row["search_spent_vs_budget"][key] = max(r["spent_flops"] / r["budget_flops"] for r in seeds)
            reach = None if target is None else first_reach(mean_curve(curves), target)
            row["ratio_to_scratch_largest_final"][key] = None if reach is None else reach / unit
        arms[arm] = row
    others: dict[str, dict[str, float | None]] = {}
    extended = [s["scratch_search_extended"] for s in budgeted]
    for name, seeds in runs.items():
        others[name] = {}
        for b in budgets:
            values = []
            for i, r in enumerate(seeds):
                curve = r["curve"]
                if name == "scratch_search" and extended[i] is not None and b * unit > r["horizon"] * (1 + 1e-9):
                    curve = extended[i]["curve"]
                values.append(score_at(curve, b * unit))
            others[name][str(b)] = _mean(values)
    return {"budgets": list(budgets), "arms": arms, "others_at_budget": others,
            "scratch_search_extended": extended}


def goals_budgeted(budgeted: dict[str, Any], target: float | None, margin: float) -> dict[str, Any]:
    """Issue 21's goals for ``growsearch_budget`` given each budget, met or not, with the
    numbers: >= every other strategy (the five, read at that budget) at every budget;
    >= ``margin`` over scratch_largest at every budget; scratch_largest's final reached
    (by the end of the run) when given <= 50% of its compute; and the no-surrogate ablation
    >= random pruning + early stopping at every budget."""
    ours = budgeted["arms"]["growsearch_budget"]["at_own_budget"]
    others = budgeted["others_at_budget"]
    worse = [{"budget": b, "strategy": name, "growsearch_budget": ours[b], "other": others[name][b]}
             for b in ours for name in others
             if others[name][b] is not None and (ours[b] is None or ours[b] < others[name][b])]
    over = {b: None if ours[b] is None or others["scratch_largest"][b] is None
            else ours[b] - others["scratch_largest"][b] for b in ours}
    half = {b: v for b, v in ours.items() if float(b) <= 0.5}
    reached = [b for b, v in half.items() if v is not None and target is not None and v >= target - 1e-12]
    ratios = budgeted["arms"]["growsearch_budget"]["ratio_to_scratch_largest_final"]
    bare = budgeted["arms"]["growsearch_budget_no_surrogate"]["at_own_budget"]
    rp = others["growsearch_random_pruning"]
    behind = [{"budget": b, "no_surrogate": bare[b], "random_pruning": rp[b]} for b in bare
              if rp[b] is not None and (bare[b] is None or bare[b] < rp[b] - 1e-12)]
    return {"best_at_every_budget": {"met": not worse, "behind": worse},
            "margin_over_scratch_largest": {"met": all(v is not None and v >= margin - 1e-12 for v in over.values()),
                                            "required": margin, "by_budget": over},
            "half_compute_to_scratch_final": {"met": bool(reached), "target": target,
                                              "at_budgets_up_to_half": half, "reached_at": reached,
                                              "ratio_on_each_run": ratios},
            "no_surrogate_vs_random_pruning": {"met": not behind, "behind": behind,
                                               "no_surrogate": bare, "random_pruning": rp}}


def _full_examples(setting: Setting, task: Task) -> int:
    """Examples of one full training run with the pool's recipe."""
    from growsearch.train import total_steps

    recipe = setting.pool.recipe
    n = len(task.x_train)
    steps = total_steps(recipe, n)
    per_epoch = math.ceil(n / recipe.batch_size)
    epochs, rest = divmod(steps, per_epoch)
    return epochs * n + min(rest * recipe.batch_size, n)


def _run_record(seed: int, events: list[Event], start: Point | None, began: float) -> dict[str, Any]:
    stages: dict[str, float] = {}
    for ev in events:
        stages[ev["stage"]] = stages.get(ev["stage"], 0.0) + ev["compute"]
    return {"seed": seed, "curve": anytime_curve(events, start), "total_compute": sum(stages.values()),
            "compute_by_stage": stages, "models": sum(1 for e in events if e.get("model") is not None),
            "seconds": time.perf_counter() - began}


def _seed_job(setting: Setting, seed: int) -> dict[str, dict[str, Any]]:
    return run_seed(setting, seed)


def _budget_job(setting: Setting, seed: int, budgets: tuple[float, ...], horizon: float) -> dict[str, Any]:
    return run_seed_budgeted(setting, seed, budgets, horizon)


def make_setting(pool: Pool) -> Setting:
    """The pool's pretrained base, its family's bundled space and the largest plan in it."""
    state, spec, pretrain_final = pretrain_base(pool)
    setting = Setting(pool, state, spec, pretrain_final, f"{pool.family}.yaml")
    task = setting.task()
    setting.largest_plan = largest_plan(setting.space(), setting.base_cfg(), task.x_train[:1]).to_dict()
    return setting


def reused_runs(earlier: dict[str, Any], pool: Pool, seeds: tuple[int, ...]) -> dict[int, dict[str, Any]]:
    """The five strategies' runs of an earlier result of this benchmark, by seed -- for a
    re-run of the budgeted arms alone (every strategy is deterministic given its seed, so
    their runs would be the same). Refused unless the pool, its version and recipe, the
    strategies and the seeds are this run's."""
    mine = {"pool": pool.name, "version": pool.version, "recipe": pool.recipe.to_dict(),
            "strategies": list(STRATEGIES)}
    for key, value in mine.items():
        if earlier.get(key) != value:
            raise ConfigError(f"--reuse: its {key} is {earlier.get(key)!r}, this run's is {value!r}; allowed: a "
                              "result of the same pool, version, recipe and strategies")
    if earlier.get("seeds") != list(seeds):
        raise ConfigError(f"--reuse: its seeds are {earlier.get('seeds')}, this run's are {list(seeds)}; allowed: "
                          "the same seeds")
    return {seed: {name: earlier["runs"][name][i] for name in STRATEGIES} for i, seed in enumerate(seeds)}


def run_headline_benchmark(pool: Pool, seeds: tuple[int, ...] = DEFAULT_SEEDS, jobs: int = 1,
                           progress: Any = None, budgets: tuple[float, ...] = BUDGETED,
                           reuse: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run every strategy over ``seeds`` on ``pool``; the JSON-ready result. ``budgets``: the
    budgeted arms' budgets (full trainings; empty: the five strategies alone). Every seed's
    five strategies run before any budgeted arm, in the order they always ran; ``reuse``,
    an earlier result, gives them instead (:func:`reused_runs`)."""
    began = time.perf_counter()
    torch.set_num_threads(1)
    setting = make_setting(pool)
    state, spec, pretrain_final = setting.base_state, setting.base_spec, setting.pretrain_record
    task = setting.task()
    space = setting.space()
    plan = setting.largest()
    largest_cfg = planned_config(setting.base_cfg(), plan)
    unit = setting.flops(largest_cfg, task) * _full_examples(setting, task)
    base_flops = setting.flops(setting.base_cfg(), task)
    pretrain = base_flops * pretrain_final["forward_backward"]
    budgets = tuple(float(b) for b in budgets)
    total = len(seeds) * (len(STRATEGIES) + len(BUDGET_ARMS) * len(budgets) + (1 if budgets else 0))
    done = 0
    per_seed: dict[int, dict[str, dict[str, Any]]] = {}
    def ticker(seed: int) -> Callable[[str], None]:
        """The progress callback of one seed's runs: one tick per strategy or budgeted arm."""
        def tick(name: str) -> None:
            nonlocal done
            done += 1
            if progress is not None:
                progress(done, total, f"seed {seed}: {name}")
        return tick

    if reuse is not None:
        per_seed = reused_runs(reuse, pool, seeds)
        done += len(seeds) * len(STRATEGIES)
    elif jobs <= 1:
        for seed in seeds:
            per_seed[seed] = run_seed(setting, seed, progress=ticker(seed))
    else:
        with ProcessPoolExecutor(max_workers=jobs) as ex:
            futures = {seed: ex.submit(_seed_job, setting, seed) for seed in seeds}
            for seed, future in futures.items():
                per_seed[seed] = future.result()
                done += len(STRATEGIES)
                if progress is not None:
                    progress(done, total, f"seed {seed}")
    budgeted_seeds: dict[int, dict[str, Any]] = {}
    if budgets and jobs <= 1:
        for seed in seeds:
            budgeted_seeds[seed] = run_seed_budgeted(setting, seed, budgets,
                                                     per_seed[seed]["scratch_search"]["horizon"], ticker(seed))
    elif budgets:
        with ProcessPoolExecutor(max_workers=jobs) as ex:
            futures = {seed: ex.submit(_budget_job, setting, seed, budgets,
                                       per_seed[seed]["scratch_search"]["horizon"]) for seed in seeds}
            for seed, future in futures.items():
                budgeted_seeds[seed] = future.result()
                done += len(BUDGET_ARMS) * len(budgets) + 1
                if progress is not None:
                    progress(done, total, f"seed {seed}: budgeted arms")
    runs = {name: [per_seed[s][name] for s in seeds] for name in STRATEGIES}
    summary = summarize(runs, unit, pretrain)
    margin = 0.02 if task.kind == "lm" else 0.01
    extra: dict[str, Any] = {}
    goal_block = goals(summary, margin=margin)
    if budgets:
        budgeted = summarize_budgeted(runs, [budgeted_seeds[s] for s in seeds], budgets, unit, pretrain)
        search_units = {r["search_unit_flops"] for s in seeds for arm in BUDGET_ARMS
                        for r in budgeted_seeds[s]["arms"][arm].values()}
        budgeted["unit_check"] = {"headline_unit_flops": unit, "search_unit_flops": sorted(search_units),
                                  "same": all(math.isclose(u, unit, rel_tol=1e-9) for u in search_units)}
        extra["budgeted"] = budgeted
        goal_block["growsearch_budget"] = goals_budgeted(budgeted, summary["scratch_largest_final"], margin)
    base = _base_point(setting)
    with torch.device("meta"):
        largest_params = count_params(largest_cfg.build())
    return {
        "pool": pool.name, "version": pool.version, "family": pool.family, "dataset": pool.dataset,
        "score": "neg_test_loss" if task.kind == "lm" else "test_accuracy",
        "decision_split": "val", "seeds": list(seeds), "strategies": list(STRATEGIES),
        "recipe": pool.recipe.to_dict(), "space": {"file": setting.space_path, "constraints": space.constraints},
        "largest": {"plan": plan.to_dict(), "plan_name": plan.describe(), "params": largest_params,
                    "training_flops_per_example": setting.flops(largest_cfg, task)},
        "base": {"spec": spec, "params": count_params(pool_base_model(state, spec)),
                 "training_flops_per_example": base_flops, "score": base["score"], "val": base["val"],
                 "pretrain_examples": pretrain_final["forward_backward"], "pretrain_compute": pretrain},
        "scratch_largest_compute": unit, "budgets": list(BUDGETS),
        "runs": runs, **summary,
        "total_compute_vs_unit": {name: statistics.mean(r["total_compute"] for r in runs[name]) / unit
                                  for name in STRATEGIES},
        **extra,
        "goals": goal_block,
        "product_config": product_config(setting, seeds[0], Path("<base>"), False).to_dict(),
        "seconds": time.perf_counter() - began,
        "environment": {"growsearch": __version__, "torch": torch.__version__, "optuna": optuna.__version__,
                        "python": platform.python_version(), "cpus": os.cpu_count(), "jobs": jobs},
        **({"reused": "the five strategies' runs from an earlier result (--reuse)"} if reuse is not None else {}),
    }
