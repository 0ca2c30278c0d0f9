"""Is growing worth it at all? Growth against training the same architecture from scratch.

For a few plans of a pool: train the target architecture from scratch with the pool's
recipe, and grow the pretrained base into it (``net2net`` and ``random``) and train with
the same recipe. Report validation and test score per epoch and the compute, in
training FLOPs (:func:`growsearch.metrics.cost.training_flops`: forward + backward = 3x
forward), a grown model needs to reach the scratch model's final test score (grown and
scratch models have the same architecture, so the same FLOPs per example). The base's
pretraining compute, in the base's own FLOPs, is reported separately (a team that already
has the small model paid it; one that does not can add it).
"""

from __future__ import annotations

import copy
import dataclasses
import statistics
import time
from typing import Any

import torch

from growsearch.bench.pools import Pool
from growsearch.bench.predictors import pool_base_model, pretrain_base
from growsearch.data import load_dataset
from growsearch.grow import ExpansionPlan, grow
from growsearch.metrics.cost import flops_per_example, training_flops
from growsearch.models import config_from_spec
from growsearch.pretrain import DEFAULT_RECIPES
from growsearch.search.space import planned_config
from growsearch.train import task_score, train

GROWTH_PLANS = 3  # the first plans of each kind: width, depth, mixed


def _curve(model: torch.nn.Module, pool: Pool, seed: int) -> list[dict[str, float]]:
    """Per-epoch test score (``score``), validation score and training FLOPs."""
    task = load_dataset(pool.dataset)
    forward = flops_per_example(model, task.x_train[:1])
    result = train(model, task, pool.recipe, seed=seed)
    return [{"epoch": h["epoch"], "score": task_score(h, task, "test"), "val_score": task_score(h, task, "val"),
             "forward_backward": h["forward_backward"], "flops": training_flops(forward, h["forward_backward"])}
            for h in result.history]


def _mean_curve(curves: list[list[dict[str, float]]]) -> list[dict[str, float]]:
    return [{"epoch": pts[0]["epoch"], "forward_backward": pts[0]["forward_backward"], "flops": pts[0]["flops"],
             "score": statistics.mean(p["score"] for p in pts),
             "val_score": statistics.mean(p["val_score"] for p in pts)} for pts in zip(*curves, strict=True)]


def _compute_to_reach(curve: list[dict[str, float]], target: float) -> float | None:
    for point in curve:
        if point["score"] >= target:
            return point["flops"]
    return None


def pick_plans(pool: Pool) -> list[dict[str, Any]]:
    """One width, one depth and one mixed plan of the pool (its first of each kind)."""
    chosen: dict[str, dict[str, Any]] = {}
    for plan in pool.plans:
        chosen.setdefault(ExpansionPlan.from_dict(plan).kind, plan)
    return [chosen[k] for k in ("width", "depth", "mixed") if k in chosen][:GROWTH_PLANS]


def run_growth_benchmark(pool: Pool, progress: Any = None) -> dict[str, Any]:
    start = time.perf_counter()
    torch.set_num_threads(1)
    task = load_dataset(pool.dataset)
    state, spec, pretrain_final = pretrain_base(pool)
    base = pool_base_model(state, spec)
    pretrain_recipe = dataclasses.replace(DEFAULT_RECIPES[pool.dataset], epochs=pool.base_epochs)
    pretrain_fb = pool.base_epochs * len(task.x_train)
    pretrain_flops = training_flops(flops_per_example(base, task.x_train[:1]), pretrain_fb)
    plans = pick_plans(pool)
    rows = []
    for i, plan_dict in enumerate(plans):
        plan = ExpansionPlan.from_dict(plan_dict)
        target_cfg = planned_config(config_from_spec(spec), plan)
        curves: dict[str, list[list[dict[str, float]]]] = {"scratch": [], "net2net": [], "random": []}
        for seed in pool.seeds:
            torch.manual_seed(1000 + seed)
            curves["scratch"].append(_curve(target_cfg.build(), pool, seed))
            for init in ("net2net", "random"):
                grown = grow(base, spec, plan, init=init, seed=0).model
                curves[init].append(_curve(copy.deepcopy(grown), pool, seed))
        mean = {k: _mean_curve(v) for k, v in curves.items()}
        scratch_final = mean["scratch"][-1]["score"]
        scratch_fb = mean["scratch"][-1]["flops"]
        row = {"plan": plan_dict, "plan_name": plan.describe(), "kind": plan.kind,
               "params": sum(p.numel() for p in target_cfg.build().parameters()),
               "scratch_final_score": scratch_final, "scratch_compute": scratch_fb, "curves": mean}
        for init in ("net2net", "random"):
            reach = _compute_to_reach(mean[init], scratch_final)
            row[f"{init}_final_score"] = mean[init][-1]["score"]
            row[f"{init}_compute_to_scratch_score"] = reach
            row[f"{init}_compute_ratio"] = None if reach is None else reach / scratch_fb
            row[f"{init}_compute_ratio_with_pretraining"] = (
                None if reach is None else (reach + pretrain_flops) / scratch_fb)
        rows.append(row)
        if progress is not None:
            progress(i + 1, len(plans), plan.describe())
    return {"pool": pool.name, "dataset": pool.dataset, "family": pool.family,
            "score": "neg_test_loss" if task.kind == "lm" else "test_accuracy",
            "recipe": pool.recipe.to_dict(), "seeds": list(pool.seeds),
            "base": {"spec": spec, "pretrain": pretrain_final, "pretrain_recipe": pretrain_recipe.to_dict(),
                     "pretrain_examples": pretrain_fb, "pretrain_compute": pretrain_flops},
            "compute_unit": "training FLOPs (forward + backward = 3 x forward)",
            "plans": rows, "seconds": time.perf_counter() - start}
