"""Executors run trials; the search logic above them is the same for all.

An executor has two verbs. ``screen(study, proposer, storage)`` runs surrogate-screening
trials until the engine's proposer has all its candidates: the Optuna study proposes,
the proposer turns a trial into a candidate (or a rejection) and persists each finished
record at once. ``train(jobs, scheduler, on_epoch, on_record)`` runs full trainings under
an early-stopping scheduler and hands every record to ``on_record`` as soon as its trial
finishes, so that the engine persists it at once.
:class:`LocalExecutor` runs in-process, one trial at a time (debugging, unit tests, and
machines without Ray); :mod:`growsearch.search.ray_executor` runs trials with Ray Tune.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from growsearch.grow import DEFAULT_INIT
from growsearch.search.schedulers import Scheduler
from growsearch.search.trials import SearchContext, screen_candidate, train_candidate

PROPOSAL_KEYS = ("id", "trial", "plan", "init", "plan_name", "kind")


def proposal(record: dict[str, Any]) -> dict[str, Any]:
    """What a candidate record holds before screening (a retry starts from here)."""
    return {k: record[k] for k in PROPOSAL_KEYS if k in record}


@dataclass
class TrainJob:
    id: str
    plan: dict[str, Any] | None  # None: the base model, trained as the reference
    init: str = DEFAULT_INIT
    schedule: bool = True  # subject to early stopping (the reference is not)
    until: int | None = None  # pause after this epoch (a stage of synchronous successive halving)
    resume: str | None = None  # a paused checkpoint to continue from


class Executor:
    name = "base"

    def __init__(self, ctx: SearchContext, device: str = "auto") -> None:
        self.ctx = ctx
        self.device = device

    def screen(self, study: Any, proposer: Any, storage: Any) -> None:
        raise NotImplementedError

    def rescreen(self, records: list[dict[str, Any]], proposer: Any) -> None:
        """Screen again candidates whose proposal is recorded but whose screening was
        interrupted or failed for the environment's reasons: same id, same plan, same trial."""
        raise NotImplementedError

    def train(self, jobs: list[TrainJob], scheduler: Scheduler,
              on_epoch: Callable[[str, dict[str, float]], None] | None = None,
              on_record: Callable[[dict[str, Any]], None] = lambda r: None) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class LocalExecutor(Executor):
    """In-process, sequential: results arrive in job order (deterministic)."""

    name = "local"

    def screen(self, study: Any, proposer: Any, storage: Any) -> None:
        while proposer.remaining() > 0:
            asked = proposer.ask(study)
            if asked is None:  # the space is exhausted
                break
            trial, record = asked
            if record.get("stage") != "rejected":
                record = {**record, **screen_candidate(self.ctx, record["id"], record["plan"], record["init"],
                                                       self.device)}
            proposer.done(trial.number, record)

    def rescreen(self, records: list[dict[str, Any]], proposer: Any) -> None:
        for record in records:
            proposer.done(record["trial"], {**proposal(record), **screen_candidate(
                self.ctx, record["id"], record["plan"], record["init"], self.device)})

    def train(self, jobs: list[TrainJob], scheduler: Scheduler,
              on_epoch: Callable[[str, dict[str, float]], None] | None = None,
              on_record: Callable[[dict[str, Any]], None] = lambda r: None) -> None:
        for job in jobs:
            def keep_going(epoch: int, score: float, job: TrainJob = job) -> bool:
                return scheduler.on_epoch(job.id, epoch, score) if job.schedule else True

            def report(rec: dict[str, float], model: Any = None, spec: Any = None, job: TrainJob = job) -> None:
                if on_epoch is not None:
                    on_epoch(job.id, rec)

            on_record(train_candidate(self.ctx, job.id, job.plan, job.init, keep_going, report, self.device,
                                      until=job.until, resume=job.resume))
