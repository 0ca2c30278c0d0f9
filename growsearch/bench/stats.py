"""Rank statistics for judging predictors: Kendall tau-b, Spearman rho, bootstrap
intervals, and concordance within groups of (nearly) equal parameter count."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats


def _finite(values: Sequence[float]) -> np.ndarray:
    """-inf (e.g. a degenerate volume) ranks lowest; NaN also ranks lowest."""
    arr = np.asarray(values, dtype=float)
    low = np.nanmin(arr[np.isfinite(arr)]) - 1.0 if np.isfinite(arr).any() else 0.0
    return np.where(np.isfinite(arr), arr, low)


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


def equal_param_groups(params: Sequence[int], tolerance: float = 0.1) -> list[list[int]]:
    """Indices grouped so that every member is within ``tolerance`` (relative) of the
    group's smallest; only groups of two or more are returned."""
    order = sorted(range(len(params)), key=lambda i: params[i])
    groups: list[list[int]] = []
    for i in order:
        if groups and params[i] <= params[groups[-1][0]] * (1 + tolerance):
            groups[-1].append(i)
        else:
            groups.append([i])
    return [g for g in groups if len(g) > 1]


def within_group_kendall(pred: Sequence[float], target: Sequence[float],
                         groups: list[list[int]]) -> tuple[float, int]:
    """Kendall-style concordance over all pairs inside the groups:
    (concordant - discordant) / pairs, ties in either variable counted as neither.
    Returns ``(tau, number of pairs)``."""
    p, t = _finite(pred), _finite(target)
    conc = disc = pairs = 0
    for g in groups:
        for a in range(len(g)):
            for b in range(a + 1, len(g)):
                i, j = g[a], g[b]
                pairs += 1
                s = np.sign(p[i] - p[j]) * np.sign(t[i] - t[j])
                conc += s > 0
                disc += s < 0
    return (float((conc - disc) / pairs) if pairs else math.nan), pairs


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
