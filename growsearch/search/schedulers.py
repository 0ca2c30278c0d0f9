"""Early stopping of full training: which running trainings to stop.

:class:`ASHA` is asynchronous successive halving (Li et al. 2020, as in Ray Tune's
``ASHAScheduler``): rungs at ``grace * eta^i`` epochs; a training that reaches a rung
continues only if its score is in the top ``1/eta`` of all scores recorded at that rung
so far. Decisions depend only on the order in which results arrive, which the local
executor keeps fixed (promotion order), so a resumed search makes the same decisions.
"""

from __future__ import annotations

import math

import numpy as np

from growsearch.search.config import EarlyStoppingSpec


class Scheduler:
    """Base class: ``on_epoch(trial, epoch, score) -> True`` to keep training."""

    def on_epoch(self, trial: str, epoch: int, score: float) -> bool:
        return True


class NoStopping(Scheduler):
    pass


class ASHA(Scheduler):
    def __init__(self, max_epochs: int, grace: int = 2, eta: int = 3) -> None:
        self.eta = eta
        self.rungs: list[int] = []
        r = grace
        while r < max_epochs:
            self.rungs.append(r)
            r *= eta
        self.recorded: dict[int, list[float]] = {r: [] for r in self.rungs}

    def on_epoch(self, trial: str, epoch: int, score: float) -> bool:
        if epoch not in self.recorded:
            return True
        scores = self.recorded[epoch]
        scores.append(score if math.isfinite(score) else -math.inf)
        # Ray Tune's rule (so both executors decide alike): stop below the (1 - 1/eta) quantile
        cutoff = float(np.nanpercentile(scores, (1 - 1 / self.eta) * 100))
        return score >= cutoff


def make_scheduler(spec: EarlyStoppingSpec, max_epochs: int) -> Scheduler:
    if spec.policy == "none":
        return NoStopping()
    return ASHA(max_epochs, spec.grace_epochs, spec.reduction_factor)
