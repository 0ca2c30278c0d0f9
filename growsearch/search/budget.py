"""The search with a budget (``budget:`` in the config): multi-fidelity and cost-aware from
the first candidate, with the surrogate as a prior that has to earn its weight.

Flow (every number a function of the config, the seeds and what was observed):

* **Budget.** ``budget.flops`` or ``budget.full_trainings`` x one full training (the
  config's recipe) of the largest candidate the space allows (:func:`largest_allowed`).
  Everything spent counts: each screen (the surrogate's forward+backward-equivalent
  examples), every epoch of every training (stopped and failed ones included) and, with
  ``reference: true`` (off by default under a budget), the base's reference run, which
  trains *after* the candidates with its cost reserved from the start. A budget that
  cannot pay (the reference plus) one epoch-rung of the smallest growth is refused before
  any compute (:func:`check_budget`).
* **Brackets of synchronous successive halving** until the budget (or ``candidates:``,
  an optional cap on the candidates screened) runs out. Rung 0 is the surrogate's screen
  (none with ``surrogate: none``: no surrogate source, nothing spent on screening); rung 1
  ``early_stopping.grace_epochs`` of training; later rungs x ``reduction_factor`` up to
  the recipe's epochs; past rung 1 the best ``ceil(n/eta)`` by validation score go on,
  each resuming from its paused checkpoint (freeze-thaw: no epoch is thrown away).
  **Cost-aware**: a bracket's first rung gets ``1/R`` of what is left (R training rungs);
  its size is that share over a typical candidate's first rung (the geometric mean of
  the smallest and the largest); a proposal whose first rung exceeds its slot's share
  is drawn again (on the meta device: no compute); a promotion ranks by score, cheaper
  first on equal scores, and skips a candidate whose next rung no longer fits.
* **Proposals** (PriorBand-style, on Optuna): the first is the largest allowed
  expansion with the default init; then each slot draws its source from a mix of
  ``sampler`` (the config's Optuna sampler, told the observed rung-1 validation scores
  -- TPE starts uniform), ``surrogate`` (``budget.screen_batch`` uniform proposals
  screened, the surrogate's best goes on) and ``incumbent`` (a mutation of the
  candidate with the best validation score so far). A source's weight is 1 + its
  candidates' promotions; the surrogate's is further scaled by ``max(0.1, (1 + tau)/2)``
  with tau the latest online Kendall tau (:func:`source_weights`).
* **Online surrogate check.** After each training rung: Kendall tau of the surrogate
  against that rung's validation scores over every candidate that reached it so far --
  in the progress line, ``budget.json``, ``leaderboard.md`` and the MLflow parent run
  (``surrogate_tau``, step = the rung decision's number).

Resume: the loop is replayed from the start; every screen and training stage whose
record exists is read instead of computed, and every decision (sources, proposals,
bracket sizes, promotions, the budget left) is taken from the replay's own account, so
a resumed search ends exactly as an uninterrupted one.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
import torch

from growsearch.checkpoint import write_json
from growsearch.errors import ConfigError, IncompleteSearchError
from growsearch.grow import DEFAULT_INIT, ExpansionPlan
from growsearch.metrics.cost import flops_per_example, training_flops
from growsearch.models import ModelConfig, count_params
from growsearch.results import SearchState
from growsearch.search.config import MAX_CANDIDATES, SearchConfig
from growsearch.search.executors import TrainJob
from growsearch.search.schedulers import NoStopping, finite_score, rungs_of
from growsearch.search.space import SearchSpace, planned_config
from growsearch.search.surrogate import describe, surrogate_values

SOURCES = ("sampler", "surrogate", "incumbent")
LARGEST = "largest"
MAX_ATTEMPTS = 12  # draws per slot before the slot stays empty
TRUST_FLOOR = 0.1  # the surrogate's weight factor when its tau is -1 or worse
FINISHED = ("completed", "stopped_early", "failed")


# -- the space, enumerated ------------------------------------------------------------------
def _knob_of(space: SearchSpace, name: str):
    return space.knobs.get(name) or space.knobs[name.rsplit("_", 1)[0]]  # layer_width_3 -> layer_width


def allowed_grid(space: SearchSpace, base: ModelConfig) -> list[tuple[dict[str, Any], ExpansionPlan]]:
    """Every distinct architecture the space can propose, as ``(knob values, plan)``: each
    knob's choices, or every value of its stepped range (an unstepped float range: its two
    ends), through the space's own ``suggest`` (the init knob left out)."""
    values: dict[str, list[Any]] = {}
    for name, knob in space.knobs.items():
        if name == "init":  # one init: architectures only
            values[name] = [(knob.choices or [DEFAULT_INIT])[0]]
            continue
        if knob.choices is not None:
            vals = list(knob.choices)
        elif knob.step is None and not (isinstance(knob.low, int) and isinstance(knob.high, int)):
            vals = [knob.low, knob.high]
        else:
            step = knob.step or 1
            n = math.floor((knob.high - knob.low) / step + 1e-9) + 1
            vals = [knob.low + i * step for i in range(n)]
        if name == "layer_width":
            widths = base.hidden if space.family == "mlp" else base.channels
            for i in range(len(widths)):
                values[f"layer_width_{i}"] = vals
        else:
            values[name] = vals
    plans: dict[str, tuple[dict[str, Any], ExpansionPlan]] = {}
    names = sorted(values)
    for combo in itertools.product(*(values[n] for n in names)):
        trial = optuna.trial.FixedTrial(dict(zip(names, combo, strict=True)))
        plan, _ = space.suggest(trial, base)
        plans.setdefault(plan.describe(), (dict(trial.params), plan))
    return list(plans.values())


def _meta_params(base: ModelConfig, plan: ExpansionPlan) -> int:
    with torch.device("meta"):
        return count_params(planned_config(base, plan).build())


def _meta_flops(base: ModelConfig, plan: ExpansionPlan | None, example: torch.Tensor) -> int:
    with torch.device("meta"):
        model = (planned_config(base, plan) if plan is not None else base).build()
        return flops_per_example(model, example.to("meta"))


def largest_allowed(space: SearchSpace, base: ModelConfig, example: torch.Tensor) -> tuple[dict[str, Any],
                                                                                             ExpansionPlan]:
    """The allowed plan with the most parameters (ties: more FLOPs, then the first in the
    grid), with the knob values that propose it and the default init (or the space's
    first init when it does not offer the default)."""
    best, best_key = None, None
    for params, plan in allowed_grid(space, base):
        if space.violation(base, plan, example) is not None:
            continue
        n = _meta_params(base, plan)
        if best_key is None or n > best_key[0] or (n == best_key[0] and _meta_flops(base, plan, example) >
                                                   _meta_flops(base, best[1], example)):
            best, best_key = (params, plan), (n,)
    if best is None:
        raise ConfigError(f"{space.source}: no plan satisfies the constraints {space.constraints}")
    params = dict(best[0])
    if "init" in space.knobs:
        choices = space.knobs["init"].choices or []
        params["init"] = DEFAULT_INIT if DEFAULT_INIT in choices else choices[0]
    return params, best[1]


# -- the budget -------------------------------------------------------------------------------
@dataclass
class BudgetPlan:
    """What the budget buys, in training FLOPs (forward + backward = 3 x forward)."""

    total: float  # the budget
    unit: float  # one full training of the largest allowed candidate
    rungs: list[int]  # training rungs in epochs; the last is the recipe's epochs
    eta: int
    n_train: int  # examples per epoch
    base_flops: int  # forward FLOPs per example of the base
    largest_flops: int
    largest: dict[str, Any]  # the knob values of the largest allowed expansion (init included)
    largest_plan: str
    reserve: float  # the reference run's cost (0 without one)

    def epoch_cost(self, flops: float) -> float:
        return training_flops(flops, self.n_train)

    @property
    def min_rung1(self) -> float:
        """The first rung of the smallest possible candidate (a growth is never below the base)."""
        return self.epoch_cost(self.base_flops) * self.rungs[0]

    def show(self, flops: float) -> str:
        return f"{flops:.3g} FLOPs ({flops / self.unit:.3f} full trainings)"

    def to_dict(self) -> dict[str, Any]:
        return {"budget_flops": self.total, "unit_flops": self.unit, "budget_full_trainings": self.total / self.unit,
                "rungs": self.rungs, "reduction_factor": self.eta, "examples_per_epoch": self.n_train,
                "largest_allowed": self.largest_plan, "reference_flops": self.reserve}


def plan_budget(cfg: SearchConfig, space: SearchSpace, base: ModelConfig, example: torch.Tensor,
                n_train: int) -> BudgetPlan:
    """The budget of ``cfg`` for this space and base (meta device: no compute)."""
    assert cfg.budget is not None
    params, plan = largest_allowed(space, base, example)
    largest_flops = _meta_flops(base, plan, example)
    base_flops = _meta_flops(base, None, example)
    epochs = cfg.training.epochs
    unit = training_flops(largest_flops, epochs * n_train)
    total = cfg.budget.flops if cfg.budget.flops is not None else cfg.budget.full_trainings * unit
    es = cfg.early_stopping
    rungs = [*rungs_of(epochs, es.grace_epochs, es.reduction_factor), epochs]
    reserve = training_flops(base_flops, epochs * n_train) if cfg.reference else 0.0
    return BudgetPlan(float(total), float(unit), rungs, es.reduction_factor, n_train, base_flops, largest_flops,
                      params, plan.describe(), float(reserve))


def check_budget(plan: BudgetPlan) -> None:
    """Refuse, in one line and before any compute, a budget too small for one candidate's first rung."""
    need = plan.reserve + plan.min_rung1
    if plan.total < need:
        ref = f" plus the reference run ({plan.show(plan.reserve)}; reference: none skips it)" if plan.reserve else ""
        raise ConfigError(f"budget: {plan.show(plan.total)} is too small for one candidate's first rung "
                          f"({plan.rungs[0]} epoch(s) of the smallest growth: {plan.show(plan.min_rung1)}){ref}; "
                          f"allowed: at least {plan.show(need)}")


# -- the mix of proposal sources ---------------------------------------------------------------
def trust(tau: float | None) -> float:
    """The surrogate's weight factor from its online Kendall tau (1 before any evidence)."""
    return 1.0 if tau is None else max(TRUST_FLOOR, (1.0 + tau) / 2.0)


def source_weights(wins: dict[str, int], tau: float | None, incumbent: bool,
                   surrogate: bool = True) -> dict[str, float]:
    """Each source's probability: 1 + its candidates' promotions (PriorBand's credit to the
    source of the rung winners), the surrogate's scaled by :func:`trust`; no incumbent
    source before any candidate trained, no surrogate source with ``surrogate: none``."""
    raw = {"sampler": 1.0 + wins.get("sampler", 0),
           "surrogate": (1.0 + wins.get("surrogate", 0)) * trust(tau) if surrogate else 0.0,
           "incumbent": (1.0 + wins.get("incumbent", 0)) if incumbent else 0.0}
    total = sum(raw.values())
    return {k: v / total for k, v in raw.items()}


def _rng(*numbers: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(n) for n in numbers]))


def _seed(*numbers: int) -> int:
    return int(np.random.SeedSequence([int(n) for n in numbers]).generate_state(1)[0])


def mutate(params: dict[str, Any], space: SearchSpace, rng: np.random.Generator) -> dict[str, Any]:
    """A neighbour of ``params``: each knob changed with probability 1/d (at least one) --
    another choice, one or two steps up or down, or a log-normal factor on an unstepped range."""
    names = sorted(params)
    if not names:
        return dict(params)
    pick = [n for n in names if rng.random() < 1.0 / len(names)] or [names[int(rng.integers(len(names)))]]
    out = dict(params)
    for name in pick:
        knob, value = _knob_of(space, name), params[name]
        if knob.choices is not None:
            others = [c for c in knob.choices if c != value]
            if others:
                out[name] = others[int(rng.integers(len(others)))]
            continue
        sign = 1 if rng.random() < 0.5 else -1
        if knob.step is not None or (isinstance(knob.low, int) and isinstance(knob.high, int)):
            step = knob.step or 1
            new = value + sign * step * int(rng.integers(1, 3))
            new = min(max(new, knob.low), knob.high)
            new = knob.low + round((new - knob.low) / step) * step
            out[name] = round(new) if isinstance(knob.low, int) and not isinstance(step, float) else float(new)
        else:
            out[name] = float(min(max(value * math.exp(0.25 * rng.normal()), knob.low), knob.high))
    return out


def uniform_draw(space: SearchSpace, base: ModelConfig, seed: int,
                 fixed: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, str], ExpansionPlan, str]:
    """One uniform proposal (knob values ``fixed`` kept where the space uses them):
    ``(params, distributions as JSON, plan, init)``."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    if fixed:
        study.enqueue_trial(fixed, skip_if_exists=False)
    trial = study.ask()
    plan, init = space.suggest(trial, base)
    dists = {k: optuna.distributions.distribution_to_json(v) for k, v in trial.distributions.items()}
    return dict(trial.params), dists, plan, init


def _key(plan: ExpansionPlan, init: str) -> tuple[str, str]:
    return plan.describe(), init


# -- the search ---------------------------------------------------------------------------------
@dataclass
class Draw:
    source: str
    params: dict[str, Any]
    dists: dict[str, str]
    plan: ExpansionPlan
    init: str
    trial: int | None = None  # the study's trial (sampler draws)
    extra: dict[str, Any] = field(default_factory=dict)


class BudgetedSearch:
    """One replayable run of the flow in the module docstring."""

    def __init__(self, cfg: SearchConfig, plan: BudgetPlan, space: SearchSpace, base_cfg: ModelConfig,
                 example: torch.Tensor, executor: Any, state: SearchState, progress: Any, tracker: Any,
                 study: optuna.Study, seed_scheme: str) -> None:
        self.cfg, self.plan, self.space, self.base_cfg, self.example = cfg, plan, space, base_cfg, example
        self.executor, self.state, self.progress, self.tracker, self.study = executor, state, progress, tracker, study
        self.seed_scheme = seed_scheme
        self.seed = cfg.sampler.seed
        self.cap = cfg.candidates or MAX_CANDIDATES  # candidates: an optional cap on those screened
        self.with_surrogate = cfg.surrogate != "none"
        # the replay's own account: what has been spent and observed up to this point of the run
        self.spent = 0.0
        self.screened = 0  # candidates screened (the candidates: cap)
        self.screen_examples = 0.0  # the largest screen so far, in examples (the next screen's estimate)
        self.reached: dict[str, int] = {}  # candidate -> epochs trained so far
        self.wins = dict.fromkeys(SOURCES, 0)
        self.tau: float | None = None
        self.taus: list[dict[str, Any]] = []
        self.brackets: list[dict[str, Any]] = []
        self.by_slot = {(r["slot"], r["attempt"], r.get("member", 0)): r["id"] for r in state.records()
                        if "slot" in r}
        self.by_key = {(r["plan_name"], r["init"]): r["id"] for r in state.records() if "slot" in r}
        self.next_id = sum(1 for r in state.records() if r.get("stage"))
        self.trials = {(t.user_attrs["slot"], t.user_attrs["attempt"]): t
                       for t in study.get_trials(deepcopy=False) if "slot" in t.user_attrs}
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            if "slot" not in t.user_attrs:  # asked by an interrupted run, never used
                study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        self.told = {t.user_attrs.get("candidate") for t in study.get_trials(deepcopy=False)
                     if t.state != optuna.trial.TrialState.RUNNING}

    # -- accounting -----------------------------------------------------------------------
    def available(self) -> float:
        return self.plan.total - self.plan.reserve - self.spent

    def screen_estimate(self, flops: float) -> float:
        if not self.with_surrogate:
            return 0.0
        examples = 1.5 * self.screen_examples if self.screen_examples else \
            0.05 * self.cfg.training.epochs * self.plan.n_train
        return training_flops(flops, examples)

    def rung_cost(self, flops: float, start: int, end: int) -> float:
        return self.plan.epoch_cost(flops) * (end - start)

    def score(self, cid: str, epochs: int | None = None) -> float:
        history = self.state.record(cid).get("history") or []
        return finite_score(history[(epochs or self.reached[cid]) - 1]["score"])

    def incumbent(self) -> str | None:
        trained = [c for c, e in self.reached.items() if e > 0]
        return max(trained, key=lambda c: (self.score(c), -self.state.record(c)["flops"], c)) if trained else None

    def show(self, text: str) -> None:
        tau = "n/a" if self.tau is None else f"{self.tau:+.2f}"
        check = f"surrogate tau {tau}" if self.with_surrogate else "no surrogate"
        inc = self.incumbent()
        best = f"; best {inc} ({self.score(inc):.4f})" if inc else ""
        self.progress.advance(min(100, int(100 * self.spent / self.plan.total)),
                              f"spent {self.spent / self.plan.unit:.3f}/{self.plan.total / self.plan.unit:.3f} full "
                              f"trainings; {check}{best}; {text}")

    # -- proposals --------------------------------------------------------------------------
    def _new_record(self, draw: Draw, slot: int, attempt: int, member: int, flops: int,
                    **fields: Any) -> dict[str, Any]:
        existing = self.by_slot.get((slot, attempt, member))
        if existing is not None:
            return self.state.record(existing)
        cid = f"c{self.next_id:04d}"
        self.next_id += 1
        record = {"id": cid, "trial": draw.trial, "plan": draw.plan.to_dict(), "init": draw.init,
                  "plan_name": draw.plan.describe(), "kind": draw.plan.kind, "stage": "proposed",
                  "source": draw.source, "slot": slot, "attempt": attempt, "member": member,
                  "knobs": draw.params, "distributions": draw.dists, "flops": flops, **fields}
        self.by_slot[(slot, attempt, member)] = cid
        self.by_key[_key(draw.plan, draw.init)] = cid
        return self.state.save(record)

    def _screen(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Screen the candidates not screened yet (rung 0), in one executor call; account for all."""
        todo = [r for r in records if r.get("stage") == "proposed" or (r.get("stage") == "failed" and r.get("retry"))]
        if todo and not self.with_surrogate:  # no rung 0: the figures the leaderboard shows, on the meta device
            for r in todo:
                record = self.state.save({**self.state.record(r["id"]), "stage": "screened", "surrogate_parts": {},
                                          "params": _meta_params(self.base_cfg, ExpansionPlan.from_dict(r["plan"])),
                                          "screen_cost": 0.0, "screen_seconds": 0.0})
                if self.tracker is not None:
                    self.tracker.candidate(record)
        elif todo:
            state, tracker = self.state, self.tracker

            class Done:
                def done(self, number: int, result: dict[str, Any]) -> None:
                    record = state.save({**state.record(result["id"]), **result})
                    if tracker is not None:
                        tracker.candidate(record)

            self.executor.rescreen(todo, Done())
        out = []
        for r in records:
            r = self.state.record(r["id"])
            if r.get("stage") == "failed" and r.get("retry"):
                raise IncompleteSearchError(f"screening {r['id']} failed for reasons of the environment "
                                            f"({str(r.get('reason'))[:120]}); fix it and run the same command with "
                                            "--resume")
            self.screened += 1
            if r.get("screen_cost") is not None:
                self.spent += training_flops(r["flops"], r["screen_cost"])
                self.screen_examples = max(self.screen_examples, float(r["screen_cost"]))
            out.append(r)
        return out

    def _sampler_draw(self, slot: int, attempt: int) -> Draw:
        from growsearch.search.engine import make_sampler

        trial = self.trials.get((slot, attempt))
        if trial is None:
            self.study.sampler = make_sampler(self.cfg, slot * MAX_ATTEMPTS + attempt, self.seed_scheme)
            live = self.study.ask()
            live.set_user_attr("slot", slot)
            live.set_user_attr("attempt", attempt)
            plan, init = self.space.suggest(live, self.base_cfg)
            params, dists = dict(live.params), {k: optuna.distributions.distribution_to_json(v)
                                                for k, v in live.distributions.items()}
            return Draw("sampler", params, dists, plan, init, trial=live.number)
        plan, init = self.space.suggest(optuna.trial.FixedTrial(dict(trial.params)), self.base_cfg)
        dists = {k: optuna.distributions.distribution_to_json(v) for k, v in trial.distributions.items()}
        return Draw("sampler", dict(trial.params), dists, plan, init, trial=trial.number)

    def _refuse(self, draw: Draw, why: str) -> None:
        """A sampler draw that does not become a candidate: its trial is pruned, the reason kept."""
        if draw.trial is None:
            return
        t = self.study._storage.get_trial(self.study._storage.get_trial_id_from_study_id_trial_number(
            self.study._study_id, draw.trial))
        if t.state == optuna.trial.TrialState.RUNNING:
            self.study._storage.set_trial_user_attr(t._trial_id, "reason", why[:300])
            self.study.tell(draw.trial, state=optuna.trial.TrialState.PRUNED)

    def _admissible(self, draw: Draw, allowance: float) -> tuple[int | None, str | None]:
        """``(forward FLOPs per example, None)``, or ``(None, why)`` for a draw that cannot go on."""
        if _key(draw.plan, draw.init) in self.by_key:
            return None, f"the same as {self.by_key[_key(draw.plan, draw.init)]}"
        why = self.space.violation(self.base_cfg, draw.plan, self.example)
        if why is not None:
            return None, why
        flops = _meta_flops(self.base_cfg, draw.plan, self.example)
        first = self.rung_cost(flops, 0, self.plan.rungs[0])
        if first > allowance:
            return None, (f"budget: its first rung costs {self.plan.show(first)}; this slot allows "
                          f"{self.plan.show(allowance)}")
        if first + self.screen_estimate(flops) > self.available():
            return None, ("budget: its screen and first rung do not fit in what is left "
                          f"({self.plan.show(self.available())})")
        return flops, None

    def propose(self, bracket: int, slot: int, allowance: float) -> dict[str, Any] | None:
        """The candidate of ``slot``, screened (or None: nothing new fits)."""
        weights = source_weights(self.wins, self.tau, self.incumbent() is not None, self.with_surrogate)
        rng = _rng(self.seed, slot, 11)
        source = SOURCES[int(rng.choice(len(SOURCES), p=[weights[s] for s in SOURCES]))]
        for attempt in range(MAX_ATTEMPTS):
            first = slot == 0 and attempt == 0
            known = None if source == "surrogate" and not first else self.by_slot.get((slot, attempt, 0))
            if known is not None:  # replayed: this draw's record exists
                record = self.state.record(known)
                if record.get("stage") == "rejected":
                    continue
                record = self._screen([record])[0]
                if record.get("screen_cost") is not None:
                    return record
                continue
            if first:
                params, dists, plan, init = uniform_draw(self.space, self.base_cfg, _seed(self.seed, 0, 0, 0),
                                                         self.plan.largest)
                draw = Draw(LARGEST, params, dists, plan, init)
                flops, why = self._admissible(draw, allowance)
                if why is not None:  # proposed and recorded, so a user sees why it was not trained
                    self._new_record(draw, slot, attempt, 0, _meta_flops(self.base_cfg, plan, self.example),
                                     stage="rejected", reason=why, bracket=bracket)
                    continue
                return self._one(draw, bracket, slot, attempt, flops)
            if source == "surrogate":
                chosen = self._surrogate_batch(bracket, slot, attempt, allowance)
                if chosen is not None:
                    return chosen
                continue
            if source == "incumbent" and self.incumbent() is not None:
                best = self.state.record(self.incumbent())
                fixed = mutate(best["knobs"], self.space, _rng(self.seed, slot, attempt, 13))
                params, dists, plan, init = uniform_draw(self.space, self.base_cfg, _seed(self.seed, slot, attempt, 3),
                                                         fixed)
                draw = Draw("incumbent", params, dists, plan, init, extra={"parent": best["id"]})
            else:
                draw = self._sampler_draw(slot, attempt)
            flops, why = self._admissible(draw, allowance)
            if why is not None:
                self._refuse(draw, why)
                continue
            return self._one(draw, bracket, slot, attempt, flops)
        return None

    def _one(self, draw: Draw, bracket: int, slot: int, attempt: int, flops: int) -> dict[str, Any] | None:
        record = self._new_record(draw, slot, attempt, 0, flops, bracket=bracket, **draw.extra)
        record = self._screen([record])[0]
        return record if record.get("screen_cost") is not None else None

    def _surrogate_batch(self, bracket: int, slot: int, attempt: int, allowance: float) -> dict[str, Any] | None:
        members = []
        for j in range(self.cfg.budget.screen_batch):
            if self.screened + len(members) >= self.cap:
                break
            params, dists, plan, init = uniform_draw(self.space, self.base_cfg, _seed(self.seed, slot, attempt, j, 5))
            draw = Draw("surrogate", params, dists, plan, init)
            existing = self.by_slot.get((slot, attempt, j))
            if existing is None:
                flops, why = self._admissible(draw, allowance)
                if why is not None or any(_key(draw.plan, draw.init) == (m["plan_name"], m["init"]) for m in members):
                    continue
            else:
                flops = self.state.record(existing)["flops"]
            if self.spent + sum(self.screen_estimate(m["flops"]) for m in members) + self.screen_estimate(flops) + \
                    self.rung_cost(flops, 0, self.plan.rungs[0]) > self.plan.total - self.plan.reserve:
                continue
            members.append(self._new_record(draw, slot, attempt, j, flops, bracket=bracket))
        screened = [r for r in self._screen(members) if r.get("screen_cost") is not None]
        if not screened:
            return None
        values = surrogate_values(screened, self.cfg.surrogate)
        best = min(screened, key=lambda r: (-values[r["id"]], r["flops"], r["id"]))
        if self.rung_cost(best["flops"], 0, self.plan.rungs[0]) > self.available():
            return None
        return best

    # -- training ---------------------------------------------------------------------------
    def _train(self, cids: list[str], start: int, end: int) -> None:
        """Train ``cids`` from epoch ``start`` to ``end`` (records that hold it are read, not trained)."""
        jobs = []
        for cid in cids:
            record = self.state.record(cid)
            if (record.get("stage") in FINISHED and not record.get("retry")) or \
                    (record.get("stage") == "paused" and record["epochs"] >= end):
                continue
            paused = record.get("stage") == "paused"
            jobs.append(TrainJob(cid, record["plan"], record["init"], until=end,
                                 resume=str(self.state.out / record["checkpoint"]) if paused else None))
        if jobs:
            self.executor.train(jobs, NoStopping(), self._on_epoch, self._on_record)
        for cid in cids:
            record = self.state.record(cid)
            if record.get("retry"):
                raise IncompleteSearchError(f"training {cid} failed for reasons of the environment "
                                            f"({str(record.get('reason'))[:120]}); fix it and run the same command "
                                            "with --resume")
            done = min(len(record.get("history") or []), end)
            self.spent += self.rung_cost(record["flops"], start, max(done, start))
            self.reached[cid] = done

    def _on_epoch(self, cid: str, rec: dict[str, float]) -> None:
        if self.tracker is not None:
            self.tracker.epoch(cid, rec)

    def _on_record(self, result: dict[str, Any]) -> None:
        previous = {k: v for k, v in (self.state.record(result["id"]) or {}).items() if k not in ("retry", "reason")}
        record = self.state.save({**previous, **result})
        if self.tracker is not None and result["id"] != "base":
            self.tracker.candidate(record)
        self.show(f"{result['id']} {result['stage']} at epoch {result.get('epochs')}")

    def _stop(self, cid: str, why: str | None = None) -> None:
        record = self.state.record(cid)
        if record.get("stage") == "paused":
            from growsearch.search.engine import _stop_at_rung

            _stop_at_rung(self.state, record, self._on_record)
        if why and not record.get("reason") and record.get("stage") == "screened":
            self.state.update(cid, reason=why)

    def _tell(self, cids: list[str]) -> None:
        """The study learns each candidate's observed rung-1 validation score."""
        first = self.plan.rungs[0]
        for cid in cids:
            r = self.state.record(cid)
            ok = self.reached.get(cid, 0) >= first
            if r.get("trial") is not None:
                t = self.study._storage.get_trial(self.study._storage.get_trial_id_from_study_id_trial_number(
                    self.study._study_id, r["trial"]))
                if t.state == optuna.trial.TrialState.RUNNING:
                    self.study._storage.set_trial_user_attr(t._trial_id, "candidate", cid)
                    if ok:
                        self.study.tell(r["trial"], self.score(cid, first))
                    else:  # not trained (the budget) or its training failed
                        failed = bool(r.get("history")) or r.get("stage") == "failed"
                        self.study.tell(r["trial"], state=optuna.trial.TrialState.FAIL if failed
                                        else optuna.trial.TrialState.PRUNED)
            elif ok and cid not in self.told:
                dists = {k: optuna.distributions.json_to_distribution(v) for k, v in r["distributions"].items()}
                self.study.add_trial(optuna.trial.create_trial(
                    params=r["knobs"], distributions=dists, value=self.score(cid, first),
                    user_attrs={"candidate": cid, "source": r["source"]}))
                self.told.add(cid)

    def _check_tau(self, bracket: int, rung: int, epochs: int) -> None:
        if not self.with_surrogate:
            return
        reached = [c for c, e in self.reached.items() if e >= epochs]
        tau = None
        if len(reached) >= 2:
            from growsearch.bench.stats import kendall

            records = [self.state.record(c) for c in reached]
            values = surrogate_values(records, self.cfg.surrogate)
            tau = kendall([values[c] for c in reached], [self.score(c, epochs) for c in reached])
        step = len(self.taus)
        self.taus.append({"step": step, "bracket": bracket, "rung": rung, "epochs": epochs, "candidates": len(reached),
                          "tau": tau})
        if tau is not None:
            if rung == 1:
                self.tau = tau  # the first training rung has the most candidates: it weighs the prior
            if self.tracker is not None:
                self.tracker.search_metric("surrogate_tau", tau, step)

    def _bracket(self, bracket: int, slot: int) -> tuple[list[str], int]:
        plan = self.plan
        count = len(plan.rungs)
        share = self.available() / count
        largest1 = self.rung_cost(plan.largest_flops, 0, plan.rungs[0])
        typical = math.sqrt(plan.min_rung1 * largest1)
        size = max(1, min(plan.eta ** (count - 1), int(share // typical)))
        entrants: list[str] = []
        committed = 0.0
        for i in range(size):
            if self.screened >= self.cap:
                break
            allowance = (share - committed) / (size - i)
            if slot == 0:
                allowance = share / 2 if size > 1 else share
            allowance = min(max(allowance, plan.min_rung1), self.available())
            record = self.propose(bracket, slot, allowance)
            slot += 1
            if record is not None:
                entrants.append(record["id"])
                committed += self.rung_cost(record["flops"], 0, plan.rungs[0])
                self.state.update(record["id"], bracket=bracket)
                self.show(f"bracket {bracket}: {record['id']} {record['plan_name']} ({record['source']}) screened")
        if not entrants:
            return entrants, slot
        alive, start = list(entrants), 0
        info = {"bracket": bracket, "entrants": list(entrants), "promoted": []}
        for k, end in enumerate(plan.rungs, start=1):
            if k == 1:  # the first rung: each entrant as long as it fits
                fits, room = [], self.available()
                for cid in alive:
                    cost = self.rung_cost(self.state.record(cid)["flops"], 0, end)
                    if cost <= room:
                        fits.append(cid)
                        room -= cost
                    else:
                        self._stop(cid, f"budget: its first rung ({plan.show(cost)}) did not fit")
                alive = fits
            self._train(alive, start, end)
            if k == 1:
                self._tell(entrants)
            alive = [c for c in alive if self.reached.get(c, 0) >= end]
            self._check_tau(bracket, k, end)
            self.show(f"bracket {bracket}: rung {k} ({end} epochs) done")
            if end == plan.rungs[-1] or not alive:
                break
            nxt = plan.rungs[k]
            quota = math.ceil(len(alive) / plan.eta)
            ranked = sorted(alive, key=lambda c: (-self.score(c, end), self.state.record(c)["flops"],
                                                  entrants.index(c)))
            promoted, room = [], self.available()
            for cid in ranked:
                cost = self.rung_cost(self.state.record(cid)["flops"], end, nxt)
                if len(promoted) < quota and cost <= room:
                    promoted.append(cid)
                    room -= cost
            for cid in alive:
                if cid not in promoted:
                    self._stop(cid)
            for cid in promoted:
                source = self.state.record(cid)["source"]
                if source in self.wins:
                    self.wins[source] += 1
            info["promoted"].append(list(promoted))
            alive, start = [c for c in ranked if c in promoted], end
        self.brackets.append(info)
        return entrants, slot

    def _reference(self) -> None:
        if not self.cfg.reference:
            return
        record = self.state.record("base") or {}
        if "final_score" not in record or record.get("retry"):
            self.executor.train([TrainJob("base", None, schedule=False)], NoStopping(), self._on_epoch,
                                lambda r: self.state.save({"id": "base", "plan_name": "base (same budget)",
                                                           "kind": "reference", "flops": self.plan.base_flops, **r}))
        record = self.state.record("base") or {}
        done = len(record.get("history") or [])
        self.spent += self.rung_cost(self.plan.base_flops, 0, done)
        self.show("reference run done")

    def run(self) -> dict[str, Any]:
        self.progress.stage("budget", 100)
        bracket, slot = 0, 0
        while self.screened < self.cap and \
                self.available() >= self.plan.min_rung1 + self.screen_estimate(self.plan.base_flops):
            entrants, slot = self._bracket(bracket, slot)
            if not entrants:
                break
            bracket += 1
        # trials of candidates that never trained: pruned, so the study holds no running trial
        for t in self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            self.study.tell(t.number, state=optuna.trial.TrialState.PRUNED)
        self._reference()
        values = surrogate_values([r for r in self.state.records() if r.get("screen_cost") is not None],
                                  self.cfg.surrogate) if self.with_surrogate else {}
        for cid, value in values.items():
            record = self.state.record(cid)
            if record.get("surrogate") != value:
                self.state.update(cid, surrogate=value, surrogate_name=describe(self.cfg.surrogate))
        summary = {**self.plan.to_dict(), "spent_flops": self.spent,
                   "spent_full_trainings": self.spent / self.plan.unit,
                   "screened": self.screened, "brackets": self.brackets, "surrogate_tau": self.taus,
                   "wins": self.wins,
                   "surrogate": describe(self.cfg.surrogate),
                   "weights": source_weights(self.wins, self.tau, self.incumbent() is not None, self.with_surrogate)}
        write_json(self.state.out / "budget.json", summary)
        return summary


def run_budgeted(cfg: SearchConfig, plan: BudgetPlan, space: SearchSpace, base_cfg: ModelConfig,
                 example: torch.Tensor, executor: Any, state: SearchState, progress: Any, tracker: Any,
                 study_name: str, seed_scheme: str) -> dict[str, Any]:
    """Run (or replay and finish) the budgeted search; the budget summary (``budget.json``)."""
    storage = cfg.storage or optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(state.out / "study.journal")))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=storage, study_name=study_name, direction="maximize", load_if_exists=True)
    return BudgetedSearch(cfg, plan, space, base_cfg, example, executor, state, progress, tracker, study,
                          seed_scheme).run()
