"""Early stopping of full training: which trainings to stop, and at which epochs.

Both schedulers share Ray Tune's rungs, ``grace * eta^k`` epochs below the training's
length, and keep roughly the top ``1/eta`` of the candidates at each rung.

* :class:`SuccessiveHalving` (the default, ``successive_halving``) is synchronous: the
  promoted set is known before training starts, so a rung is decided once every live
  candidate has reached it -- the top ``ceil(n/eta)`` of the ``n`` candidates that reached
  it continue, ties broken by promotion order. The outcome depends on the candidates'
  scores only: not on concurrency, timing, or an interruption and resume. The cost is
  idle time: a fast candidate waits at a rung for the slowest (``growsearch bench
  overhead`` measures it).
* :class:`ASHA` (``asha``) is asynchronous successive halving (Li et al. 2020) with
  exactly the rule of Ray Tune's ``ASHAScheduler`` (one bracket): a training that reaches
  a rung is compared with the scores recorded at that rung *before* it -- it stops when
  below their ``(1 - 1/eta)`` percentile -- and then its score is recorded. Decisions
  depend on the order in which trainings reach a rung; use it where throughput matters
  more than reproducibility (a cluster with many more trials than workers).

Scores that are NaN or -inf (a diverged training) count as :data:`LOWEST`, a finite
floor, so that a percentile over them is a number, never NaN.
"""

from __future__ import annotations

import math

import numpy as np

from growsearch.search.config import EarlyStoppingSpec

#: What a NaN or -inf score counts as: below every real score, finite (a percentile over
#: it interpolates to a number instead of NaN).
LOWEST = -1e300


def finite_score(score: float) -> float:
    """``score``, with NaN and -inf replaced by :data:`LOWEST` (and +inf by its mirror)."""
    if math.isnan(score) or score == -math.inf:
        return LOWEST
    return min(score, -LOWEST)


def rungs_of(max_epochs: int, grace: int, eta: int) -> list[int]:
    """The epochs at which a decision is taken: Ray's ``_Bracket`` milestones
    ``grace * eta^k`` (its very expression, float rounding included), below ``max_epochs``
    (a rung at the last epoch decides nothing: training ends there anyway)."""
    if max_epochs < grace:
        return []
    count = int(np.log(max_epochs / grace) / np.log(eta) + 1)
    return [grace * eta**k for k in range(count) if grace * eta**k < max_epochs]


class Scheduler:
    """Base class: ``on_epoch(trial, epoch, score) -> True`` to keep training."""

    rungs: tuple[int, ...] | list[int] = ()  # epochs at which it decides

    def on_epoch(self, trial: str, epoch: int, score: float) -> bool:
        return True


class NoStopping(Scheduler):
    """Every promoted candidate trains for the full recipe."""


class ASHA(Scheduler):
    """Asynchronous successive halving, decision for decision Ray Tune's ``ASHAScheduler``
    (``brackets=1``, ``stop_last_trials=True``)."""

    def __init__(self, max_epochs: int, grace: int = 2, eta: int = 3) -> None:
        self.eta = eta
        self.rungs = rungs_of(max_epochs, grace, eta)
        self.recorded: dict[int, dict[str, float]] = {r: {} for r in self.rungs}

    def cutoff(self, rung: int) -> float | None:
        """The score a training reaching ``rung`` now must not fall below (None: no
        earlier score at that rung, it continues)."""
        earlier = list(self.recorded[rung].values())
        if not earlier:
            return None
        return float(np.nanpercentile(earlier, (1 - 1 / self.eta) * 100))

    def on_epoch(self, trial: str, epoch: int, score: float) -> bool:
        score = finite_score(score)
        for rung in reversed(self.rungs):  # the highest rung reached and not yet recorded
            if epoch < rung or trial in self.recorded[rung]:
                continue
            cutoff = self.cutoff(rung)  # from the earlier scores, then record this one
            self.recorded[rung][trial] = score
            return cutoff is None or not score < cutoff
        return True


class SuccessiveHalving(Scheduler):
    """Synchronous successive halving over a known set of candidates."""

    def __init__(self, max_epochs: int, grace: int = 2, eta: int = 3) -> None:
        self.eta = eta
        self.rungs = rungs_of(max_epochs, grace, eta)

    def survivors(self, scores: dict[str, float], order: list[str]) -> list[str]:
        """The candidates that continue past a rung, given the ``scores`` there of all
        ``n`` candidates that reached it: the best ``ceil(n/eta)``, ties broken by their
        place in ``order`` (promotion order). Returned in ``order``."""
        ranked = sorted(scores, key=lambda c: (-finite_score(scores[c]), order.index(c)))
        keep = set(ranked[:math.ceil(len(ranked) / self.eta)])
        return [c for c in order if c in keep]


def make_scheduler(spec: EarlyStoppingSpec, max_epochs: int) -> Scheduler:
    if spec.policy == "none":
        return NoStopping()
    if spec.policy == "asha":
        return ASHA(max_epochs, spec.grace_epochs, spec.reduction_factor)
    return SuccessiveHalving(max_epochs, spec.grace_epochs, spec.reduction_factor)
