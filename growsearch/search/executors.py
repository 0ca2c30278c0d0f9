"""Executors run trials; the search logic above them is the same for all.

An executor has two verbs: ``screen(jobs)`` runs surrogate-screening trials and
``train(jobs, scheduler)`` runs full trainings under an early-stopping scheduler. Both
yield records as they finish, so the engine can persist each one at once.
:class:`LocalExecutor` runs in-process, one trial at a time (debugging, unit tests, and
machines without Ray); :mod:`growsearch.search.ray_executor` runs trials with Ray Tune.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from growsearch.search.schedulers import Scheduler
from growsearch.search.trials import SearchContext, screen_candidate, train_candidate


@dataclass
class ScreenJob:
    id: str
    plan: dict[str, Any]
    init: str


@dataclass
class TrainJob:
    id: str
    plan: dict[str, Any] | None  # None: the base model, trained as the reference
    init: str = "net2net"
    schedule: bool = True  # subject to early stopping (the reference is not)


class Executor:
    name = "base"
    parallelism = 1

    def __init__(self, ctx: SearchContext, device: str = "auto") -> None:
        self.ctx = ctx
        self.device = device

    def screen(self, jobs: list[ScreenJob]) -> Iterator[dict[str, Any]]:
        raise NotImplementedError

    def train(self, jobs: list[TrainJob], scheduler: Scheduler,
              on_epoch: Callable[[str, dict[str, float]], None] | None = None) -> Iterator[dict[str, Any]]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class LocalExecutor(Executor):
    """In-process, sequential: results arrive in job order (deterministic)."""

    name = "local"

    def screen(self, jobs: list[ScreenJob]) -> Iterator[dict[str, Any]]:
        for job in jobs:
            yield screen_candidate(self.ctx, job.id, job.plan, job.init, self.device)

    def train(self, jobs: list[TrainJob], scheduler: Scheduler,
              on_epoch: Callable[[str, dict[str, float]], None] | None = None) -> Iterator[dict[str, Any]]:
        for job in jobs:
            def keep_going(epoch: int, score: float, job: TrainJob = job) -> bool:
                return scheduler.on_epoch(job.id, epoch, score) if job.schedule else True

            def report(rec: dict[str, float], job: TrainJob = job) -> None:
                if on_epoch is not None:
                    on_epoch(job.id, rec)

            yield train_candidate(self.ctx, job.id, job.plan, job.init, keep_going, report, self.device)
