"""Which growth init, and is growing worth it at all?

For every plan of a pool: train the target architecture from scratch, and grow the
pretrained base into it with ``random`` init and with every function-preserving init,
each trained with the pool's recipe unchanged -- the same recipe, learning rate included, for
scratch and every grown arm (an lr x 2 for grown models only was removed: it favoured the
grown arms) -- over the same seeds (``GROWTH_SEEDS``; the grow seed is the training seed, so arms are
paired by seed). Per plan and arm: the final score (mean, std, per seed), the training
compute (FLOPs) the arm needs to reach scratch's mean final score on its mean curve and
its ratio to scratch's total, the paired-seed difference against ``random`` with a 95%
t-interval, and the symmetry probe (:mod:`growsearch.grow.symmetry`) after training. The
base's pretraining compute is reported separately (a team that already has the small
model paid it). ``best_preserving_init`` is the preserving init with the highest mean *validation*
gain over the plans (scores reported are test scores). FLOPs: :func:`growsearch.metrics.cost.training_flops`.
"""

from __future__ import annotations

import copy
import dataclasses
import statistics
import time
from typing import Any

import torch
from scipy import stats as scipy_stats

from growsearch.bench.pools import Pool
from growsearch.bench.predictors import pool_base_model, pretrain_base
from growsearch.data import load_dataset
from growsearch.grow import DEFAULT_INIT, PRESERVING_INITS, ExpansionPlan, grow
from growsearch.grow.symmetry import symmetry_probe
from growsearch.metrics.cost import flops_per_example, training_flops
from growsearch.models import config_from_spec
from growsearch.pretrain import DEFAULT_RECIPES
from growsearch.search.space import planned_config
from growsearch.train import task_score, train

GROWTH_SEEDS = (0, 1, 2)
GROWN_ARMS = ("random", *PRESERVING_INITS)
#: Sized so that a pool runs in minutes on 2 (heavily shared) CPU cores with one job: per
#: pool, (epochs instead of the pool recipe's, or None; indices of the plans run, or None
#: for all -- a subset with width, depth and mixed plans of small and large size otherwise).
#: ``--all-plans`` runs every plan of the pool with the pool's recipe.
GROWTH_SETTINGS: dict[str, tuple[int | None, tuple[int, ...] | None]] = {
    "mnist1d-mlp": (None, (0, 3, 4, 6, 8, 10)),  # w1.5, w4, d1, d6, w1.5+d2, w2+d2
    "mnist1d-cnn": (2, (0, 3, 8)),  # w1.5, d1, w1.5+d1
    "text-gpt": (1, (0, 5, 8)),  # d_model=64, d1, d_model=64+d1
}


#: Score units per "point": accuracy x 100; for language models (score = -test loss) a
#: point is 0.01 nats.
POINTS = 100.0


def _curve(model: torch.nn.Module, pool: Pool, task: Any, seed: int) -> list[dict[str, float]]:
    result = train(model, task, pool.recipe, seed=seed)  # every arm: the pool's recipe as it is
    # "score" is the test score (reported); "val_score" is what the choice of an init reads
    return [{"epoch": h["epoch"], "score": task_score(h, task, "test"), "val_score": task_score(h, task, "val"),
             "forward_backward": h["forward_backward"]} for h in result.history]


def _mean_curve(curves: list[list[dict[str, float]]]) -> list[dict[str, float]]:
    return [{"epoch": pts[0]["epoch"], "forward_backward": pts[0]["forward_backward"],
             "score": statistics.mean(p["score"] for p in pts),
             "val_score": statistics.mean(p["val_score"] for p in pts)} for pts in zip(*curves, strict=True)]


def _compute_to_reach(curve: list[dict[str, float]], target: float) -> int | None:
    for point in curve:
        if point["score"] >= target:
            return int(point["forward_backward"])
    return None


def paired_interval(a: list[float], b: list[float], level: float = 0.95) -> dict[str, Any]:
    """Mean of the paired differences ``a - b`` with a t-interval (Student, n-1 dof)."""
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    mean = statistics.mean(diffs)
    if len(diffs) < 2:
        return {"mean": mean, "ci95": [None, None], "per_seed": diffs}
    half = scipy_stats.t.ppf(0.5 + level / 2, len(diffs) - 1) * statistics.stdev(diffs) / len(diffs) ** 0.5
    return {"mean": mean, "ci95": [mean - half, mean + half], "per_seed": diffs}


def _arm_summary(finals: list[float], curves: list[list[dict[str, float]]]) -> dict[str, Any]:
    return {"final_mean": statistics.mean(finals), "final_std": statistics.stdev(finals) if len(finals) > 1 else 0.0,
            "finals": finals, "val_final_mean": statistics.mean(c[-1]["val_score"] for c in curves),
            "curve": _mean_curve(curves)}


def run_plan(pool: Pool, task: Any, base: torch.nn.Module, spec: dict[str, Any], plan_dict: dict[str, Any],
             seeds: tuple[int, ...], inits: tuple[str, ...] = GROWN_ARMS) -> dict[str, Any]:
    """Scratch and every init in ``inits`` for one plan, over ``seeds``."""
    plan = ExpansionPlan.from_dict(plan_dict)
    target_cfg = planned_config(config_from_spec(spec), plan)
    example = task.x_train[:1]
    flops = training_flops(flops_per_example(target_cfg.build(), example), 1)  # per example trained
    probe_x = task.probe(256, seed=0)[0]
    curves: dict[str, list[list[dict[str, float]]]] = {arm: [] for arm in ("scratch", *inits)}
    probes: dict[str, list[dict[str, Any]]] = {init: [] for init in inits}
    diffs: dict[str, float] = {}
    for seed in seeds:
        torch.manual_seed(1000 + seed)
        curves["scratch"].append(_curve(target_cfg.build(), pool, task, seed))
        for init in inits:
            grown = grow(base, spec, plan, init=init, seed=seed, probe=probe_x)
            diffs[init] = max(diffs.get(init, 0.0), grown.max_abs_output_diff)
            model = copy.deepcopy(grown.model)
            curves[init].append(_curve(model, pool, task, seed))
            probes[init].append(symmetry_probe(model, grown.widened, probe_x))
    scratch = _arm_summary([c[-1]["score"] for c in curves["scratch"]], curves["scratch"])
    scratch_fb = scratch["curve"][-1]["forward_backward"]
    scratch.update(compute=scratch_fb * flops, forward_backward=scratch_fb)
    row: dict[str, Any] = {"plan": plan_dict, "plan_name": plan.describe(), "kind": plan.kind,
                           "params": sum(p.numel() for p in target_cfg.build().parameters()),
                           "training_flops_per_example": flops, "scratch": scratch, "arms": {}}
    for init in inits:
        arm = _arm_summary([c[-1]["score"] for c in curves[init]], curves[init])
        reach = _compute_to_reach(arm["curve"], scratch["final_mean"])
        fractions = [p["symmetric_fraction"] for p in probes[init] if p["symmetric_fraction"] is not None]
        arm.update(
            compute_to_scratch_final=None if reach is None else reach * flops,
            ratio_to_scratch=None if reach is None else reach / scratch_fb,
            max_abs_output_diff=diffs[init],
            symmetry={"symmetric_fraction": statistics.mean(fractions) if fractions else None,
                      "rank_added": statistics.mean(p["rank_added"] for p in probes[init]),
                      "new_units": probes[init][0]["new_units"]})
        row["arms"][init] = arm
    if "random" in inits:
        for init in inits:
            if init != "random":
                row["arms"][init]["vs_random"] = paired_interval(row["arms"][init]["finals"],
                                                                 row["arms"]["random"]["finals"])
    return row


def summarize(rows: list[dict[str, Any]], base_score: float, points: float,
              base_val_score: float | None = None) -> dict[str, Any]:
    """Per init, over the plans: mean gain over the base, how often the paired difference
    against random has a 95% lower bound >= -0.5 points, how often scratch's final score
    is reached with <= 50% of scratch's compute."""
    out: dict[str, Any] = {}
    inits = list(rows[0]["arms"]) if rows else []
    for init in inits:
        arms = [r["arms"][init] for r in rows]
        entry: dict[str, Any] = {
            "mean_gain": statistics.mean(a["final_mean"] - base_score for a in arms),
            "val_mean_gain": None if base_val_score is None else
            statistics.mean(a["val_final_mean"] - base_val_score for a in arms),
            "plans_reaching_scratch_at_half_compute": sum(
                1 for a in arms if a["ratio_to_scratch"] is not None and a["ratio_to_scratch"] <= 0.5),
            "plans_reaching_scratch": sum(1 for a in arms if a["ratio_to_scratch"] is not None),
            "plans": len(arms),
        }
        if "vs_random" in arms[0]:
            lows = [a["vs_random"]["ci95"][0] for a in arms]
            entry["plans_lower_bound_ge_-0.5_points"] = sum(
                1 for lo in lows if lo is not None and lo * points >= -0.5)
        out[init] = entry
    return out


def benchmark_pool(pool: Pool, all_plans: bool = False) -> Pool:
    """``pool`` as the growth benchmark runs it (``GROWTH_SETTINGS``)."""
    epochs, plans = (None, None) if all_plans else GROWTH_SETTINGS.get(pool.name, (None, None))
    recipe = pool.recipe if epochs is None else dataclasses.replace(pool.recipe, epochs=epochs)
    chosen = pool.plans if plans is None else tuple(pool.plans[i] for i in plans)
    return dataclasses.replace(pool, recipe=recipe, plans=chosen)


def run_growth_benchmark(pool: Pool, progress: Any = None, seeds: tuple[int, ...] | None = None,
                         inits: tuple[str, ...] = GROWN_ARMS, all_plans: bool = False) -> dict[str, Any]:
    """The growth benchmark on ``pool`` (see the module docstring); a JSON-ready dict."""
    start = time.perf_counter()
    torch.set_num_threads(1)
    seeds = seeds or (pool.seeds if pool.name.endswith("-quick") else GROWTH_SEEDS)
    pool = benchmark_pool(pool, all_plans)
    task = load_dataset(pool.dataset)
    state, spec, pretrain_final = pretrain_base(pool)
    base = pool_base_model(state, spec)
    base_score, base_val_score = task_score(pretrain_final, task, "test"), task_score(pretrain_final, task, "val")
    pretrain_recipe = dataclasses.replace(DEFAULT_RECIPES[pool.dataset], epochs=pool.base_epochs)
    pretrain_fb = pool.base_epochs * len(task.x_train)
    rows = []
    for i, plan_dict in enumerate(pool.plans):
        rows.append(run_plan(pool, task, base, spec, plan_dict, seeds, inits))
        if progress is not None:
            progress(i + 1, len(pool.plans), rows[-1]["plan_name"])
    summary = summarize(rows, base_score, POINTS, base_val_score)
    preserving = [i for i in inits if i in PRESERVING_INITS]
    # a choice: by the validation gain, never the test gain
    best = max(preserving, key=lambda i: summary[i]["val_mean_gain"]) if preserving else None
    return {"pool": pool.name, "dataset": pool.dataset, "family": pool.family,
            "score": "neg_test_loss" if task.kind == "lm" else "test_accuracy",
            "points_per_score_unit": POINTS, "recipe": pool.recipe.to_dict(),
            "seeds": list(seeds),
            "base": {"spec": spec, "pretrain": pretrain_final, "score": base_score, "val_score": base_val_score,
                     "pretrain_recipe": pretrain_recipe.to_dict(), "pretrain_compute_examples": pretrain_fb},
            "plans": rows, "summary": summary, "best_preserving_init": best,
            "default_init": DEFAULT_INIT, "seconds": time.perf_counter() - start}
