"""Rank statistics for judging predictors: Kendall tau-b, Spearman rho, bootstrap
intervals, and Kendall tau-b within groups of (nearly) equal parameter count."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats


def _finite(values: Sequence[float]) -> np.ndarray:
    """Values ready for ranking: +inf ranks highest; -inf (e.g. a degenerate volume) and
    NaN rank lowest (ties among themselves)."""
    arr = np.asarray(values, dtype=float)
    finite = arr[np.isfinite(arr)]
    low, high = (finite.min() - 1.0, finite.max() + 1.0) if finite.size else (-1.0, 1.0)
    return np.where(np.isfinite(arr), arr, np.where(arr == np.inf, high, low))


def kendall(pred: Sequence[float], target: Sequence[float]) -> float:
    tau = stats.kendalltau(_finite(pred), _finite(target), variant="b").statistic
    return 0.0 if math.isnan(tau) else float(tau)


def spearman(pred: Sequence[float], target: Sequence[float]) -> float:
    rho = stats.spearmanr(_finite(pred), _finite(target)).statistic
    return 0.0 if math.isnan(rho) else float(rho)


def bootstrap_ci(pred: Sequence[float], target: Sequence[float], n_boot: int = 1000,
                 seed: int = 0, level: float = 0.95) -> list[float]:
    """Percentile bootstrap interval of Kendall tau-b, resampling candidates."""
    p, t = _finite(pred), _finite(target)
    rng = np.random.default_rng(seed)
    taus = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(p), len(p))
        tau = stats.kendalltau(p[idx], t[idx], variant="b").statistic
        if not math.isnan(tau):
            taus.append(tau)
    if not taus:
        return [math.nan, math.nan]
    lo, hi = np.percentile(taus, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return [float(lo), float(hi)]


GROUP_TOLERANCE = 0.1  # equal-parameter bins are 10% wide on a log scale


def param_bin(params: int, tolerance: float = GROUP_TOLERANCE) -> int:
    """The fixed bin of a parameter count: ``floor(log(params) / log(1 + tolerance))``,
    i.e. bins ``[(1 + tolerance)^b, (1 + tolerance)^(b + 1))`` anchored at 1 parameter."""
    # the tiny offset keeps an exact power of (1 + tolerance) in its own bin despite rounding
    return math.floor(math.log(params) / math.log1p(tolerance) + 1e-9)


def equal_param_groups(params: Sequence[int], tolerance: float = GROUP_TOLERANCE) -> list[list[int]]:
    """Indices grouped by :func:`param_bin`: a candidate's group depends on its own parameter
    count only, never on which other candidates exist (members of a group are within
    ``tolerance`` of each other; two counts closer than that can still straddle a bin edge).
    Only groups of two or more are returned, ordered by bin."""
    bins: dict[int, list[int]] = {}
    for i, p in enumerate(params):
        bins.setdefault(param_bin(p, tolerance), []).append(i)
    return [bins[b] for b in sorted(bins) if len(bins[b]) > 1]


def within_group_kendall(pred: Sequence[float], target: Sequence[float],
                         groups: list[list[int]]) -> tuple[float, int]:
    """Kendall tau-b over the pairs inside the groups, pooled -- the same statistic as the
    overall tau (scipy's ``kendalltau``, variant b) restricted to those pairs:
    ``(concordant - discordant) / sqrt((pairs - ties in pred) * (pairs - ties in target))``.
    For a single group it equals scipy's tau-b on that group. Returns ``(tau, pairs)``."""
    p, t = _finite(pred), _finite(target)
    conc = disc = pairs = tied_p = tied_t = 0
    for g in groups:
        for a in range(len(g)):
            for b in range(a + 1, len(g)):
                i, j = g[a], g[b]
                pairs += 1
                dp, dt = np.sign(p[i] - p[j]), np.sign(t[i] - t[j])
                tied_p += dp == 0
                tied_t += dt == 0
                conc += dp * dt > 0
                disc += dp * dt < 0
    denominator = math.sqrt((pairs - tied_p) * (pairs - tied_t))
    return (float((conc - disc) / denominator) if denominator else math.nan), pairs


def partial_kendall(pred: Sequence[float], target: Sequence[float], control: Sequence[float]) -> float:
    """Kendall's partial tau of ``pred`` and ``target`` controlling for ``control``:
    ``(t_pt - t_pc t_tc) / sqrt((1 - t_pc^2)(1 - t_tc^2))`` (Kendall 1942), from tau-b.

    With ``control`` = #params (any monotone transform, e.g. log, gives the same value) it
    asks whether a predictor ranks gains beyond what size alone explains: #params itself
    scores 0. NaN when ``pred`` or ``target`` is a function of ``control`` (|tau| = 1).
    """
    t_pt, t_pc, t_tc = kendall(pred, target), kendall(pred, control), kendall(target, control)
    denom = (1 - t_pc ** 2) * (1 - t_tc ** 2)
    return float((t_pt - t_pc * t_tc) / math.sqrt(denom)) if denom > 1e-12 else math.nan
