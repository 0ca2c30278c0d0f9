"""The search loop: propose -> grow -> screen -> promote -> train -> leaderboard.

With ``budget:`` in the config the loop is :mod:`growsearch.search.budget`'s instead
(multi-fidelity brackets to a compute budget); the base, the results folder, the
reference check, the report and MLflow are shared. Without it nothing changes.

Everything a search produces lives in one results folder (:mod:`growsearch.results`
describes its layout), written atomically.

Resume: running the same command again reads the records, never recomputes a finished
candidate, and re-proposes nothing twice. The sampler is re-created before every ask
(Optuna does not store samplers), seeded by :func:`ask_seed` from the configured seed
and the number of asks so far, so the proposals of a resumed search are those of an
uninterrupted one. The two numbers are mixed by numpy's ``SeedSequence``, so searches of
seeds s and s + 1 propose unrelated candidates; a folder started before that (no
``seed_scheme`` in its ``inputs.json``) keeps the plain ``seed + ask number`` of its
version, under which it resumes identically.
"""

from __future__ import annotations

import json
import math
import sys
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
import yaml

from growsearch import __version__
from growsearch._validate import read_yaml
from growsearch.checkpoint import atomic_write, load_base_model, load_checkpoint, write_json
from growsearch.data import load_dataset
from growsearch.errors import ConfigError, GrowsearchError, IncompleteSearchError, SearchFailed
from growsearch.faults import maybe_inject, remember_search_group
from growsearch.lock import FolderLock
from growsearch.models import config_from_spec
from growsearch.pretrain import DEFAULT_DATASET, pretrain
from growsearch.report import write_report
from growsearch.results import SearchState, read_json, repair_journal
from growsearch.search.budget import BudgetPlan, check_budget, plan_budget, run_budgeted
from growsearch.search.config import OBJECTIVES, SearchConfig, objective_values
from growsearch.search.executors import Executor, LocalExecutor, TrainJob
from growsearch.search.inputs import (
    LEGACY_SEED_SCHEME,
    LEGACY_STUDY,
    SEED_SCHEME,
    check_inputs,
    fingerprint,
    save_inputs,
    seed_scheme,
)
from growsearch.search.promote import make_policy
from growsearch.search.schedulers import NoStopping, SuccessiveHalving, make_scheduler
from growsearch.search.space import load_space
from growsearch.search.surrogate import describe, surrogate_values
from growsearch.search.trials import SearchContext
from growsearch.tracking import default_experiment, make_tracker
from growsearch.train import evaluate, mask_steps, task_score


class Progress:
    """What the engine reports while it works; the CLI renders it with rich."""

    def stage(self, name: str, total: int) -> None: ...

    def advance(self, done: int, text: str = "") -> None: ...


@dataclass
class SearchResult:
    out: Path
    records: list[dict[str, Any]]
    reference: dict[str, Any] | None
    best: dict[str, Any] | None


def ask_seed(seed: int, offset: int, scheme: str = SEED_SCHEME) -> int:
    """The seed of the sampler that makes ask number ``offset`` of a search seeded ``seed``.

    ``scheme`` is the results folder's (:func:`growsearch.search.inputs.seed_scheme`):
    ``SEED_SCHEME`` mixes the two numbers with numpy's ``SeedSequence`` (0..2**32-1), so
    that no ask of seed s + 1 reuses one of seed s; ``LEGACY_SEED_SCHEME`` is the
    ``seed + offset`` of folders started by older versions, under which seed s + 1
    proposed seed s's candidates shifted by one -- kept so that those folders resume as
    they began. Both executors seed through here (:meth:`Proposer.sampler`)."""
    if scheme == LEGACY_SEED_SCHEME:
        return seed + offset
    if scheme != SEED_SCHEME:
        raise ConfigError(f"seed_scheme: got {scheme!r}; allowed: {SEED_SCHEME!r}, {LEGACY_SEED_SCHEME!r}")
    return int(np.random.SeedSequence([seed, offset]).generate_state(1)[0])


def make_sampler(cfg: SearchConfig, offset: int, scheme: str = SEED_SCHEME) -> optuna.samplers.BaseSampler:
    """The sampler for ask number ``offset``, seeded by :func:`ask_seed` under ``scheme``."""
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    seed = ask_seed(cfg.sampler.seed, offset, scheme)
    if cfg.sampler.name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if cfg.sampler.name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True)


# what a start that failed before config.yaml was written may leave (the MLflow store is
# created first, the lock and the inputs' hashes next): --resume starts such a folder afresh
START_LEFTOVERS = frozenset({"mlflow.db", "mlflow.db-wal", "mlflow.db-shm",  # SQLite in WAL mode
                             "mlartifacts", ".lock", "inputs.json"})


#: What a budgeted search left out of its config used to mean (0.1.0 until stop 26: a cap of
#: 12 candidates and a reference run); the folders it began saved these values.
LEGACY_BUDGET_DEFAULTS = {"candidates": 12, "reference": True}


def _keep_legacy_budget_defaults(cfg: SearchConfig, previous: dict[str, Any]) -> None:
    """A budgeted search resumed from a folder begun under the old defaults keeps them, so it
    ends as it would have (today such a config leaves both unset: no cap, no reference)."""
    if cfg.budget is None or not previous.get("budget"):
        return
    for key, old in LEGACY_BUDGET_DEFAULTS.items():
        if getattr(cfg, key) is None and previous.get(key) == old:
            setattr(cfg, key, old)


def _check_out(cfg: SearchConfig, out: Path, resume: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out: {out} is a file; allowed: a folder (new, or one holding a search)")
    saved = out / "config.yaml"
    if saved.exists():
        if not resume:
            raise ConfigError(f"--out: {out} already holds a search; pass --resume to continue it, "
                              "or choose another folder")
        previous = read_yaml(saved, "results")
        if not isinstance(previous, dict):
            raise ConfigError(f"results: {saved} is damaged (not a mapping); restore it")
        _keep_legacy_budget_defaults(cfg, previous)
        current = json.loads(json.dumps(cfg.to_dict()))
        for key in sorted(set(previous) | set(current)):
            if key not in ("executor", "tracking") and previous.get(key) != current.get(key):
                raise ConfigError(f"--resume: config key {key!r} differs from the search in {out}; "
                                  "a resumed search must use the same settings")
        # damaged files are refused (or a torn journal line repaired) before anything runs
        SearchState(out).records()
        if (out / "promotion.json").exists() and not isinstance(read_json(out / "promotion.json"), dict):
            raise ConfigError(f"results: {out / 'promotion.json'} is damaged; delete it to promote again")
        warning = repair_journal(out / "study.journal") if cfg.storage is None else None
        if warning:
            print(f"growsearch: warning: {warning}", file=sys.stderr)
    elif any((out / name).exists() for name in ("candidates", "study.journal", "promotion.json")):
        # another config must not adopt results whose config.yaml was deleted
        raise ConfigError(f"--out: {out} holds search results but no config.yaml; restore it, or choose another "
                          "folder")
    elif resume and out.exists() and any(p.name not in START_LEFTOVERS for p in out.iterdir()):
        raise ConfigError(f"--resume: {out} holds no growsearch search (no config.yaml)")


BaseModel = tuple[torch.nn.Module, dict[str, Any], str]  # model, spec, dataset


def _check_base(cfg: SearchConfig, space_family: str) -> BaseModel | None:
    """Validate the base before anything is written: a checkpoint base is loaded (and
    returned) and must take the dataset's inputs and produce its classes; a pretrain base
    must be a family that can model its dataset."""
    from growsearch.data import check_dataset_name
    from growsearch.pretrain import default_config

    if cfg.dataset:
        check_dataset_name(cfg.dataset)
    source = cfg.base.source()
    if source is not None:
        model, spec, meta = load_base_model(source)
        family, dataset = spec["family"], cfg.dataset or meta.get("dataset", "")
        if not dataset:
            raise ConfigError(f"dataset: the base {source} names no dataset; set dataset:")
        check_dataset_name(dataset)
        dataset = config_from_spec(spec).dataset_ref(dataset)
        _check_fits(model, spec, load_dataset(dataset), source)  # user data is read now: a bad file writes nothing
        loaded: BaseModel | None = (model, spec, dataset)
    else:
        family, loaded = cfg.base.pretrain.family, None
        dataset = cfg.base.pretrain.dataset or cfg.dataset or DEFAULT_DATASET[family]
        check_dataset_name(dataset)
        default_config(family, load_dataset(dataset))  # a family that cannot model the dataset is refused
    if family != space_family:
        raise ConfigError(f"space: {cfg.space} is for {space_family} models; the base model is {family}")
    if cfg.training.mask_steps is not None:  # the mask ramp must fit in the training run
        dataset = loaded[2] if loaded else (cfg.dataset or cfg.base.pretrain.dataset or DEFAULT_DATASET[family])
        mask_steps(cfg.training, len(load_dataset(dataset).x_train), "training")
    return loaded


def _check_fits(model: torch.nn.Module, spec: dict[str, Any], task, where: str) -> None:
    """One forward pass on two training examples: the base must read the dataset's inputs
    and output one score per class (per token, for a language model)."""
    try:
        with torch.no_grad():
            logits = model.eval()(task.x_train[:2])
    except (RuntimeError, IndexError, ValueError) as exc:
        raise ConfigError(f"dataset: {task.name} inputs of shape {tuple(task.x_train.shape[1:])} do not fit the "
                          f"base model in {where} ({spec['family']}: {str(exc).splitlines()[0][:120]}); allowed: "
                          "the dataset the base was trained on, or one with the same input shape") from None
    if logits.shape[-1] < task.num_classes:
        raise ConfigError(f"dataset: {task.name} has {task.num_classes} classes but the base model in {where} "
                          f"outputs {logits.shape[-1]}; allowed: a dataset with at most {logits.shape[-1]} classes")


def _pretrained_base(cfg: SearchConfig, out: Path) -> BaseModel:
    """The ``pretrain:`` base, trained once and cached in the results folder."""
    p = cfg.base.pretrain
    cache = out / "base"
    if (cache / "spec.json").exists():
        model, spec, meta = load_checkpoint(cache)
        return model, spec, meta["dataset"]
    dataset = p.dataset or cfg.dataset or DEFAULT_DATASET[p.family]
    model, spec, _ = pretrain(p.family, dataset, out=cache, epochs=p.epochs, seed=p.seed, device="cpu")
    return model, spec, dataset


def default_executor(ctx: SearchContext, cfg: SearchConfig) -> Executor:
    if cfg.executor.name == "ray":
        from growsearch.search.ray_executor import RayExecutor

        return RayExecutor(ctx, cfg)
    return LocalExecutor(ctx, cfg.executor.device)


def _connect_ray(cfg: SearchConfig) -> bool:
    """Reach Ray before anything is written or computed; True if we started it."""
    if cfg.executor.name != "ray":
        return False
    from growsearch.search.ray_executor import connect

    return connect(cfg.executor, lambda msg: print(f"growsearch: {msg}", file=sys.stderr))


def run_search(cfg: SearchConfig, out: str | Path, *, resume: bool = False,
               progress: Progress | None = None, tracker: Any = None,
               make_executor: Callable[[SearchContext, SearchConfig], Executor] | None = None) -> SearchResult:
    """Run (or resume) the search described by ``cfg`` into the results folder ``out``."""
    out = Path(out)
    progress = progress or Progress()
    # everything that can be checked is checked before anything is written or computed
    space = load_space(cfg.space)
    base = _check_base(cfg, space.family)
    lock = FolderLock(out, "growsearch run")
    lock.check()  # a live process holds the folder: refused before anything else happens
    _check_out(cfg, out, resume)  # (a resumed folder's legacy defaults adopted: the budget's plan needs them)
    if cfg.budget is not None:  # a budget too small for one candidate's first rung: refused before any compute
        check_budget(_budget_plan(cfg, space, base))
    inputs = check_inputs(out, fingerprint(space.path, None, cfg.base.checkpoint), cfg.name or out.name)
    if tracker is None and cfg.tracking.enabled:
        tracker = make_tracker(cfg.tracking, out, default_experiment(cfg))
    if tracker is not None:
        tracker.check()  # an unreachable server is an error before any compute
    remember_search_group()  # before Ray starts: its workers inherit where a signal fault goes
    started_ray = _connect_ray(cfg)
    try:
        with lock:
            # again under the lock: another process may have written the folder since the peek
            _check_out(cfg, out, resume)
            inputs = check_inputs(out, fingerprint(space.path, None, cfg.base.checkpoint), cfg.name or out.name)
            if cfg.storage is None:  # Optuna's journal lock, left by an interrupted append: only we write here
                (out / "study.journal.lock").unlink(missing_ok=True)
            return _run(cfg, out, space, base, progress, tracker, make_executor, inputs)
    finally:
        if started_ray:
            import ray

            ray.shutdown()


def _budget_plan(cfg: SearchConfig, space, base: BaseModel | None, base_cfg=None) -> BudgetPlan:
    """The budget of ``cfg`` (meta device; a pretrain base by its default architecture)."""
    from growsearch.pretrain import default_config

    if base_cfg is None and base is not None:
        base_cfg, task = config_from_spec(base[1]), load_dataset(base[2])
    elif base_cfg is None:
        p = cfg.base.pretrain
        task = load_dataset(p.dataset or cfg.dataset or DEFAULT_DATASET[p.family])
        base_cfg = default_config(p.family, task)
    else:
        task = load_dataset(base[2])
    return plan_budget(cfg, space, base_cfg, task.x_train[:1], len(task.x_train))


def _run(cfg: SearchConfig, out: Path, space, base: BaseModel | None, progress: Progress, tracker: Any,
         make_executor: Callable[[SearchContext, SearchConfig], Executor] | None,
         inputs: dict[str, Any]) -> SearchResult:
    out.mkdir(parents=True, exist_ok=True)
    save_inputs(out, inputs)  # before config.yaml: a folder with config.yaml always has its inputs
    if not (out / "config.yaml").exists():
        atomic_write(out / "config.yaml", yaml.safe_dump(json.loads(json.dumps(cfg.to_dict())), sort_keys=False))

    progress.stage("base model", 1)
    base_model, base_spec, dataset = base or _pretrained_base(cfg, out)
    base_cfg = config_from_spec(base_spec)
    task = load_dataset(dataset)
    base_val, base_test = (evaluate(base_model, *task.split(split)) for split in ("val", "test"))
    progress.advance(1, f"{base_cfg.family}, val accuracy {base_val['accuracy']:.3f}")
    ctx = SearchContext(base_spec, {k: v.detach().cpu() for k, v in base_model.state_dict().items()},
                        dataset, cfg.training, cfg.manifold, cfg.seed, str(out), cfg.surrogate)
    executor = (make_executor or default_executor)(ctx, cfg)
    state = SearchState(out)
    if tracker is not None:
        tracker.start(cfg, out, base_spec, {**{f"val_{k}": v for k, v in base_val.items()},
                                            **{f"test_{k}": v for k, v in base_test.items()}})
    budget = None
    try:
        if cfg.budget is not None:
            plan = _budget_plan(cfg, space, (base_model, base_spec, dataset), base_cfg)
            budget = run_budgeted(cfg, plan, space, base_cfg, task.x_train[:1], executor, state, progress, tracker,
                                  inputs["study"], seed_scheme(inputs))
        else:
            _screen(cfg, out, space, base_cfg, task, executor, state, progress, tracker, inputs["study"],
                    seed_scheme(inputs))
            _promote_and_train(cfg, executor, state, progress, tracker)
    finally:
        executor.close()
    records = state.records()
    reference = state.record("base") if cfg.reference else None
    if cfg.reference and (reference is None or reference.get("final_score") is None):
        # gains against the untrained base would silently measure something else
        raise SearchFailed(f"the reference training (the base for the same budget) failed: "
                            f"{(reference or {}).get('reason', 'no final score')}; gains cannot be computed. Fix the "
                            "cause and resume (the finished candidates are kept), or set reference: false")
    # gains are measured on the validation split (a decision); test figures are reported beside them
    base_score = reference["final_score"] if reference else \
        task_score({"val_accuracy": base_val["accuracy"], "val_loss": base_val["loss"]}, task, "val")
    base_test_score = reference.get("final_test_score") if reference else \
        task_score({"test_accuracy": base_test["accuracy"], "test_loss": base_test["loss"]}, task, "test")
    info = {"base_val": base_val, "base_test": base_test, "base_score": base_score,
            "base_test_score": base_test_score, "dataset": dataset, "version": __version__}
    if budget is not None:
        info["budget"] = {k: budget[k] for k in ("budget_flops", "unit_flops", "budget_full_trainings",
                                                 "spent_flops", "spent_full_trainings", "surrogate_tau", "weights",
                                                 "reference_flops")}
    best = write_report(out, records, reference, base_score, info)
    if tracker is not None:
        if budget is not None:
            tracker.search_metrics({"budget": budget["budget_flops"], "spent": budget["spent_flops"],
                                    "budget_full_trainings": budget["budget_full_trainings"],
                                    "spent_full_trainings": budget["spent_full_trainings"]})
        tracker.finish(out, records, best, base_score, base_test_score)
    return SearchResult(out, records, reference, best)


def needs_screening(record: dict[str, Any]) -> bool:
    """A proposal whose screening was interrupted, or failed for the environment's reasons."""
    return record.get("stage") == "proposed" or (record.get("stage") == "failed" and bool(record.get("retry"))
                                                 and "history" not in record)


def _reasons(state: SearchState, ids: list[str]) -> str:
    shown = []
    for cid in ids[:3]:
        record = state.record(cid) or {}
        shown.append(f"{cid}: {str(record.get('reason', 'interrupted'))[:120]}")
    return "; ".join(shown) + ("; ..." if len(ids) > 3 else "")


#: Proposals in a row that repeat an earlier candidate before the space counts as exhausted.
MAX_REPEATS = 50


def plan_key(record: dict[str, Any]) -> tuple[str, str]:
    """What makes two proposals the same candidate: the expansion and its init."""
    return record.get("plan_name", ""), record.get("init", "")


class Proposer:
    """The engine's half of screening, shared by every executor.

    ``suggest(trial)`` turns an Optuna trial into a candidate: the next id, a plan from
    the space, and -- if the plan breaks a constraint -- a ``rejected`` record, before any
    compute. ``done(number, record, told)`` persists a finished record and, unless the
    executor's searcher already did (Ray's OptunaSearch), tells the study.

    A proposal equal to an earlier candidate (same plan and init) is no new candidate:
    ``suggest`` returns None, the trial is told the earlier candidate's value (at once, or
    when that candidate finishes) and carries ``duplicate_of``; the executor asks again.
    After :data:`MAX_REPEATS` repeats in a row the space counts as exhausted. Every count
    that seeds the sampler is read back from the study, so a resumed search proposes what
    an uninterrupted one would; ``seed_scheme`` is the folder's (see :func:`ask_seed`).
    """

    def __init__(self, cfg: SearchConfig, space, base_cfg, example: torch.Tensor, study: optuna.Study,
                 state: SearchState, progress: Progress, tracker: Any, seed_scheme: str = SEED_SCHEME) -> None:
        self.cfg, self.space, self.base_cfg, self.example = cfg, space, base_cfg, example
        self.seed_scheme = seed_scheme
        self.study, self.state, self.progress, self.tracker = study, state, progress, tracker
        self.issued = self.allocated()
        self.best: tuple[str, float] = ("", -math.inf)  # best surrogate so far, for the progress line
        self.seen = {plan_key(r): r["id"] for r in self.state.records() if r.get("stage")}
        self.waiting: dict[str, list[int]] = {}  # candidate id -> repeats to tell when it finishes
        self.repeats = self.streak = 0
        for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
            if "duplicate_of" in t.user_attrs:
                self.repeats += 1
                self.streak += 1
            elif "candidate" in t.user_attrs:
                self.streak = 0

    @property
    def exhausted(self) -> bool:
        return self.streak >= MAX_REPEATS

    def allocated(self) -> int:
        """Candidate ids handed out so far: every record, finished or not (ids are never reused)."""
        return sum(1 for r in self.state.records() if r.get("stage"))

    def recorded(self) -> int:
        """Candidates whose screening is final (not in flight, not waiting for a retry)."""
        return sum(1 for r in self.state.records() if r.get("stage") and not needs_screening(r))

    def remaining(self) -> int:
        """Proposals still to ask the study for (0 once the space is exhausted)."""
        return 0 if self.exhausted else self.cfg.candidates - self.allocated()

    def sampler(self) -> optuna.samplers.BaseSampler:
        # seeded by the count of issued candidates and of repeats, not of trials: an
        # interrupted trial (dropped on resume) must not shift the proposals of a resumed search
        return make_sampler(self.cfg, self.issued + self.repeats, self.seed_scheme)

    def ask(self, study: optuna.Study) -> tuple[optuna.Trial, dict[str, Any]] | None:
        """The next new candidate's trial and record, asking again over repeats; None when
        the space is exhausted."""
        while not self.exhausted:
            study.sampler = self.sampler()  # Optuna does not store samplers: re-seeded per ask
            trial = study.ask()
            record = self.suggest(trial)
            if record is not None:
                return trial, record
        return None

    def suggest(self, trial: optuna.Trial) -> dict[str, Any] | None:
        plan, init = self.space.suggest(trial, self.base_cfg)
        record = {"plan": plan.to_dict(), "init": init, "plan_name": plan.describe(), "kind": plan.kind}
        earlier = self.seen.get(plan_key(record))
        if earlier is not None:
            self._repeat(trial, earlier)
            return None
        # numbered like the sampler's seed, so a resumed search names them as a fresh one
        cid = f"c{self.issued:04d}"
        self.issued += 1
        self.streak = 0
        self.seen[plan_key(record)] = cid
        trial.set_user_attr("candidate", cid)
        record = {"id": cid, "trial": trial.number, **record, "stage": "proposed"}
        try:
            why = self.space.violation(self.base_cfg, plan, self.example)
        except GrowsearchError as exc:  # a plan the space allows but the model cannot take
            why = str(exc)
        if why is not None:
            record = {**record, "stage": "rejected", "reason": why}
        # durable before any work: a resumed search finishes this candidate under this id
        return self.state.save(record)

    def _repeat(self, trial: optuna.Trial, earlier: str) -> None:
        trial.set_user_attr("duplicate_of", earlier)
        self.repeats += 1
        self.streak += 1
        record = self.state.record(earlier)
        if record is not None and record.get("stage") and not needs_screening(record):
            self.tell_repeat(trial.number, record)
        else:  # still being screened (concurrent trials): told when it finishes
            self.waiting.setdefault(earlier, []).append(trial.number)
        self.progress.advance(self.recorded(), f"{record['plan_name'] if record else earlier} proposed again "
                                               f"(= {earlier}): not screened twice")
        if self.exhausted:
            print(f"growsearch: the sampler proposed only earlier candidates {MAX_REPEATS} times in a row: the "
                  f"space looks exhausted at {self.recorded()} distinct candidates (candidates: "
                  f"{self.cfg.candidates}); screening stops here", file=sys.stderr)

    def tell_repeat(self, number: int, record: dict[str, Any]) -> None:
        """Tell the repeat trial ``number`` what its earlier candidate ``record`` got."""
        if record["stage"] not in ("rejected", "failed"):
            self.study.tell(number, objective_values(record, self.cfg.objectives))
        else:
            self.study.tell(number, state=optuna.trial.TrialState.PRUNED if record["stage"] == "rejected"
                            else optuna.trial.TrialState.FAIL)

    def done(self, number: int, record: dict[str, Any], told: bool = False) -> None:
        record = self.state.save(record)
        if not record.get("retry"):  # a failure to retry leaves its trial (and its repeats) running
            if not told:
                try:
                    if record["stage"] == "screened":
                        self.study.tell(number, objective_values(record, self.cfg.objectives))
                    else:
                        state = optuna.trial.TrialState.PRUNED if record["stage"] == "rejected" \
                            else optuna.trial.TrialState.FAIL
                        self.study.tell(number, state=state)
                except (optuna.exceptions.UpdateFinishedTrialError, ValueError, RuntimeError):
                    pass  # a retried candidate whose trial Ray's searcher already told
            for repeat in self.waiting.pop(record["id"], []):
                self.tell_repeat(repeat, record)
        if self.tracker is not None:
            self.tracker.candidate(record)
        value = record.get("manifold_metric")
        if isinstance(value, (int, float)) and math.isfinite(value) and value > self.best[1]:
            self.best = (f"{record['id']} {record['plan_name']}", value)
        best = f"best {self.best[0]} ({self.best[1]:.3f})" if self.best[0] else ""
        self.progress.advance(self.recorded(), f"{record['id']} {record['stage']}; {best}")


def _screen(cfg: SearchConfig, out: Path, space, base_cfg, task, executor: Executor, state: SearchState,
            progress: Progress, tracker: Any, study_name: str = LEGACY_STUDY,
            scheme: str = LEGACY_SEED_SCHEME) -> None:
    storage = cfg.storage or optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(out / "study.journal")))
    directions = [OBJECTIVES[o] for o in cfg.objectives]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=storage, study_name=study_name, directions=directions,
                                load_if_exists=True)
    proposer = Proposer(cfg, space, base_cfg, task.x_train[:1], study, state, progress, tracker, scheme)
    # trials left RUNNING by an interrupted run: told from their record, kept for a rerun
    # (a persisted proposal), or dropped (killed before its proposal was persisted)
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        cid = t.user_attrs.get("candidate")
        record = state.record(cid) if cid else None
        earlier = state.record(t.user_attrs["duplicate_of"]) if "duplicate_of" in t.user_attrs else None
        if record is not None and record.get("trial") == t.number and needs_screening(record):
            continue  # screened again below, then told
        if earlier is not None and needs_screening(earlier):
            proposer.waiting.setdefault(earlier["id"], []).append(t.number)  # told when it is screened
            continue
        if record is not None and record.get("trial") == t.number and \
                record.get("stage") in ("screened", "rejected", "failed"):
            proposer.done(t.number, record)
        elif earlier is not None and earlier.get("stage"):
            proposer.tell_repeat(t.number, earlier)  # a repeat whose earlier candidate finished since
        else:
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)
    progress.stage("screening", cfg.candidates)
    progress.advance(proposer.recorded())
    pending = [r for r in state.records() if needs_screening(r)]
    if pending:  # interrupted or failed for the environment's reasons: the same candidates again
        executor.rescreen(pending, proposer)
    if proposer.remaining() > 0:
        executor.screen(study, proposer, storage)
    unfinished = [r["id"] for r in state.records() if needs_screening(r)]
    if unfinished:
        raise IncompleteSearchError(f"{len(unfinished)} candidate(s) could not be screened for reasons of the "
                               f"environment ({_reasons(state, unfinished)}); nothing was promoted; fix it "
                               "and run the same command with --resume")


def _promote_and_train(cfg: SearchConfig, executor: Executor, state: SearchState, progress: Progress,
                       tracker: Any) -> None:
    promo_path = state.out / "promotion.json"
    screened = [r for r in state.records() if r.get("stage") not in ("rejected", "failed")]
    if promo_path.exists():
        promoted = read_json(promo_path)["promoted"]
    else:
        unique, seen = [], set()
        for r in screened:  # the same expansion proposed twice is trained once (folders of older versions)
            key = (r["plan_name"], r["init"])
            if key not in seen:
                seen.add(key)
                unique.append(r)
        values = surrogate_values(unique, cfg.surrogate)
        for r in unique:
            r["surrogate"] = values[r["id"]]
            state.update(r["id"], surrogate=values[r["id"]], surrogate_name=describe(cfg.surrogate))
        promoted = make_policy(cfg.promotion, "surrogate").select(unique)
        maybe_inject("promote", "-")
        write_json(promo_path, {"policy": asdict(cfg.promotion), "surrogate": describe(cfg.surrogate),
                                "values": values, "promoted": promoted})
    for r in screened:
        if r["id"] in promoted and r["stage"] == "screened":
            state.update(r["id"], stage="promoted")

    scheduler = make_scheduler(cfg.early_stopping, cfg.training.epochs)
    reference = [TrainJob("base", None, schedule=False)] \
        if cfg.reference and "final_score" not in (state.record("base") or {}) else []
    progress.stage("training", len(promoted) + int(cfg.reference))
    done = int(cfg.reference) - len(reference) + \
        sum(1 for cid in promoted if state.record(cid).get("stage") in FINISHED)
    progress.advance(done)
    best = ("", -math.inf)

    def on_epoch(cid: str, rec: dict[str, float]) -> None:
        if tracker is not None:
            tracker.epoch(cid, rec)

    def on_record(result: dict[str, Any]) -> None:  # persisted as soon as a training (or stage) finishes
        nonlocal done, best
        if result["id"] == "base":
            state.save({"id": "base", "plan_name": "base (same budget)", "kind": "reference", **result})
        else:  # a retried training replaces the failure it retries
            previous = {k: v for k, v in (state.record(result["id"]) or {}).items() if k not in ("retry", "reason")}
            record = state.save({**previous, **result})
            if tracker is not None:
                tracker.candidate(record)
        if result["stage"] not in FINISHED:
            progress.advance(done, f"{result['id']} at epoch {result.get('epochs')}")
            return
        done += 1
        score = result.get("final_score")
        if result["id"] != "base" and score is not None and score > best[1]:
            best = (result["id"], score)
        progress.advance(done, f"{result['id']} {result['stage']}" + (f"; best {best[0]} ({best[1]:.4f})"
                                                                       if best[0] else ""))

    if isinstance(scheduler, SuccessiveHalving):
        _train_in_stages(cfg, executor, state, scheduler, promoted, reference, on_epoch, on_record)
        _check_retries(state)
        return
    jobs = list(reference)
    for cid in promoted:  # replay finished histories so the scheduler decides as before
        record = state.record(cid)
        if record.get("stage") in FINISHED and "history" in record and not record.get("retry"):
            for h in record["history"]:
                scheduler.on_epoch(cid, int(h["epoch"]), h["score"])
        else:
            jobs.append(TrainJob(cid, record["plan"], record["init"]))
    executor.train(jobs, scheduler, on_epoch, on_record)
    _check_retries(state)


FINISHED = ("completed", "stopped_early", "failed")


def _check_retries(state: SearchState) -> None:
    """Stop before the leaderboard when a training failed for the environment's reasons."""
    retry = [r["id"] for r in [*state.records(), state.record("base") or {}] if r.get("retry") and "history" in r]
    if retry:
        raise IncompleteSearchError(f"{len(retry)} training(s) failed for reasons of the environment "
                                    f"({_reasons(state, retry)}); no leaderboard was written; fix it and run the "
                                    "same command with --resume to retry them")


def _train_in_stages(cfg: SearchConfig, executor: Executor, state: SearchState, scheduler: SuccessiveHalving,
                     promoted: list[str], reference: list[TrainJob], on_epoch: Callable[[str, dict[str, float]], None],
                     on_record: Callable[[dict[str, Any]], None]) -> None:
    """Synchronous successive halving: every live candidate trains to the next rung (in
    parallel, as the executor can), then the rung is decided from their scores there.
    Each decision is a function of the candidates' histories alone, recomputed from the
    records on resume; a paused candidate continues from its checkpoint bit for bit."""
    epochs = cfg.training.epochs
    alive = list(promoted)
    for stage_end in [*scheduler.rungs, epochs]:
        jobs = list(reference) if stage_end == (scheduler.rungs or [epochs])[0] else []
        for cid in alive:
            record = state.record(cid)
            if (record.get("stage") in FINISHED and not record.get("retry")) or \
                    (record.get("stage") == "paused" and record["epochs"] >= stage_end):
                continue
            paused = record.get("stage") == "paused"
            jobs.append(TrainJob(cid, record["plan"], record["init"], until=stage_end,
                                 resume=str(state.out / record["checkpoint"]) if paused else None))
        if jobs:
            executor.train(jobs, NoStopping(), on_epoch, on_record)
        if stage_end == epochs:
            break
        # the rung: the candidates that reached it (a failed one drops out), best ceil(n/eta) go on
        reached = {}
        for cid in alive:
            history = state.record(cid).get("history") or []
            if len(history) >= stage_end:
                reached[cid] = history[stage_end - 1]["score"]
        alive = scheduler.survivors(reached, alive)
        for cid in reached:
            record = state.record(cid)
            if cid not in alive and record.get("stage") == "paused":
                _stop_at_rung(state, record, on_record)


def _stop_at_rung(state: SearchState, record: dict[str, Any], on_record: Callable[[dict[str, Any]], None]) -> None:
    """A candidate the rung stopped: its paused checkpoint becomes its model."""
    from growsearch.train import TrainState

    (state.out / record["checkpoint"] / TrainState.FILE).unlink(missing_ok=True)  # relative to the folder
    on_record({"id": record["id"], "stage": "stopped_early", "epochs": record["epochs"],
               "history": record["history"], "train_cost": record.get("train_cost"),
               "train_seconds": record.get("train_seconds"), "checkpoint": record["checkpoint"],
               **{k: v for k, v in record.items() if k.startswith("final_")}})
