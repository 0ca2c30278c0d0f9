"""The predictor benchmark: does a predictor rank a pool's expansions by their gain?

For every candidate of a pool: grow the pretrained base, compute every predictor on the
grown model (manifold metric and variants, params, FLOPs, zero-cost proxies, short
training at the metric's cost), then fully train it with the pool's recipe over the
pool's seeds. gain = mean score of the trained candidate - mean score of the base
trained for the same extra budget (score: test accuracy; -test loss for language
models) -- the final number predictors are judged against. The same gain on the
validation split (``val_gain_mean``) is what any choice made from this file reads (the
metric's tuning, ``bench/tune.py``). Each predictor is judged by Kendall tau-b and
Spearman rho against the gain, with a bootstrap 95% interval, by tau-b within
equal-parameter groups (:func:`growsearch.bench.stats.equal_param_groups`), and by the
partial tau controlling for log #params (what a predictor adds beyond size). Costs are in
training FLOPs (:func:`growsearch.metrics.cost.training_flops`); probe sizes are recorded.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import platform
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import torch

from growsearch import __version__
from growsearch.bench import stats
from growsearch.bench.pools import Pool
from growsearch.checkpoint import load_checkpoint
from growsearch.data import Task, load_dataset
from growsearch.errors import ConfigError
from growsearch.grow import ExpansionPlan
from growsearch.metrics import ManifoldConfig, score_candidate
from growsearch.metrics.cost import flops_per_example, training_flops
from growsearch.metrics.manifold import ESTIMATORS
from growsearch.models import build
from growsearch.pretrain import DEFAULT_RECIPES, default_config
from growsearch.train import TrainRecipe, task_score, train

PREDICTORS = ("manifold_metric", "manifold_per_param", *(f"manifold_{name}" for name in ESTIMATORS),
              "params", "flops", "weight_norm_volume",
              "grad_norm", "snip", "grasp", "fisher", "synflow", "jacob_cov", "naswot",
              "short_training")


def pretrain_base(pool: Pool) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, float]]:
    """The pool's base: its checkpoint (user pools), or the default architecture trained with
    the dataset recipe for ``base_epochs``, seed 0."""
    if pool.checkpoint is not None:
        model, spec, meta = load_checkpoint(pool.checkpoint)
        return ({k: v.clone() for k, v in model.state_dict().items()}, spec,
                {k: v for k, v in meta.items() if isinstance(v, (int, float))})
    task = load_dataset(pool.dataset)
    cfg = default_config(pool.family, task)
    recipe = dataclasses.replace(DEFAULT_RECIPES.get(pool.dataset, DEFAULT_RECIPES["mnist1d"]),
                                 epochs=pool.base_epochs)
    torch.manual_seed(0)
    model = cfg.build()
    result = train(model, task, recipe, seed=0)
    return {k: v.clone() for k, v in model.state_dict().items()}, cfg.to_spec(), result.final


def pool_base_model(state: dict[str, torch.Tensor], spec: dict[str, Any]) -> torch.nn.Module:
    """The base model from :func:`pretrain_base`'s state and spec."""
    base = build(spec)
    base.load_state_dict(state)
    return base


def _train_seeds(model: torch.nn.Module, task: Task, recipe: TrainRecipe,
                 seeds: tuple[int, ...]) -> dict[str, Any]:
    """Train a copy of ``model`` per seed: final test and validation scores, examples, seconds."""
    test, val, fb, seconds = [], [], 0, 0.0
    for seed in seeds:
        result = train(copy.deepcopy(model), task, recipe, seed=seed)
        test.append(task_score(result.final, task, "test"))
        val.append(task_score(result.final, task, "val"))
        fb, seconds = result.forward_backward, seconds + result.seconds
    forward = flops_per_example(model, task.x_train[:1])
    return {"scores": test, "val_scores": val, "full_training_cost": fb,
            "full_training_flops": training_flops(forward, fb), "full_training_seconds": seconds / len(seeds)}


def _base_job(pool: Pool, state: dict, spec: dict) -> dict[str, Any]:
    torch.set_num_threads(1)
    task = load_dataset(pool.dataset)
    base = pool_base_model(state, spec)
    return _train_seeds(base, task, pool.recipe, pool.seeds)


def _candidate_job(pool: Pool, state: dict, spec: dict, plan: dict, init: str,
                   manifold: ManifoldConfig, train_candidates: bool = True) -> dict[str, Any]:
    torch.set_num_threads(1)
    task = load_dataset(pool.dataset)
    base = pool_base_model(state, spec)
    grown, scores = score_candidate(base, spec, task, ExpansionPlan.from_dict(plan), init,
                                    manifold=manifold, proxies=True, short_recipe=pool.recipe,
                                    variants=dict(pool.manifold))
    out = {
        "name": f"{scores['plan_name']}/{init}", "plan": plan, "plan_name": scores["plan_name"],
        "kind": scores["kind"], "init": init, "params": scores["params"], "flops": scores["flops"],
        "max_abs_output_diff": scores["max_abs_output_diff"],
        # the data-free weight-norm formula the metric must not reduce to (manifold.weight_norm_volume)
        "predictors": {name: scores[name] if name != "weight_norm_volume" else scores["manifold"][name]
                       for name in PREDICTORS},
        "manifold": scores["manifold"], "metric_cost": scores["cost"]["forward_backward"],
        "estimator_costs": {name: scores[f"manifold_{name}_cost"] for name in ESTIMATORS},
        "metric_flops": training_flops(scores["flops"], scores["cost"]["forward_backward"]),
        "metric_seconds": scores["cost"]["seconds"], "probe_sizes": scores["probe_sizes"],
    }
    if train_candidates:
        out.update(_train_seeds(grown.model, task, pool.recipe, pool.seeds))
    return out


def judge(candidates: list[dict[str, Any]], predictors: tuple[str, ...] = PREDICTORS,
          n_boot: int = 1000) -> tuple[dict[str, dict[str, Any]], list[list[str]]]:
    """Correlation table of every predictor against ``gain_mean`` (and against the data-free
    weight-norm formula: a surrogate that only restates the weights' norms scores near 1 there)."""
    gains = [c["gain_mean"] for c in candidates]
    norms = [c["predictors"]["weight_norm_volume"] for c in candidates]
    groups = stats.equal_param_groups([c["params"] for c in candidates])
    log_params = [math.log(c["params"]) for c in candidates]
    table = {}
    for name in predictors:
        values = [c["predictors"][name] for c in candidates]
        within, pairs = stats.within_group_kendall(values, gains, groups)
        table[name] = {
            "kendall": stats.kendall(values, gains),
            "spearman": stats.spearman(values, gains),
            "kendall_ci": stats.bootstrap_ci(values, gains, n_boot=n_boot),
            "kendall_equal_params": within,
            "equal_param_pairs": pairs,
            "kendall_partial_params": stats.partial_kendall(values, gains, log_params),
            "kendall_vs_weight_norm": stats.kendall(values, norms),
        }
    return table, [[candidates[i]["name"] for i in g] for g in groups]


TRAINING_KEYS = ("scores", "val_scores", "full_training_cost", "full_training_flops", "full_training_seconds")


def reusable_training(pool: Pool, previous: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The trained scores of an earlier run of the same pool, by candidate name (and ``base``),
    for :func:`run_predictor_benchmark`'s ``rescore``: training is deterministic for a
    given pool version, recipe and seeds, so only the predictors need computing again.
    ConfigError when the earlier run is not of this pool as it is now."""
    for key, now in (("pool", pool.name), ("version", pool.version), ("recipe", pool.recipe.to_dict()),
                     ("seeds", list(pool.seeds))):
        if previous.get(key) != now:
            raise ConfigError(f"--rescore: the results' {key} is {previous.get(key)!r}, the pool's is {now!r}; "
                              "allowed: results of this pool as it is now")
    out = {c["name"]: {k: c[k] for k in TRAINING_KEYS} for c in previous["candidates"]}
    out["base"] = {k: previous["base"][k] for k in TRAINING_KEYS if k in previous["base"]}
    return out


def run_predictor_benchmark(pool: Pool, manifold: ManifoldConfig | None = None, jobs: int = 1,
                            progress: Any = None, rescore: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run a whole pool and return the JSON-ready result (see docs/benchmarks.md).

    ``rescore``: an earlier result of the same pool (version, recipe, seeds): its trained
    scores are kept and only the predictors are computed again (training is deterministic;
    the result records which file it reused)."""
    start = time.perf_counter()
    manifold = manifold or ManifoldConfig(**pool.manifold)
    trained = reusable_training(pool, rescore) if rescore is not None else None
    state, spec, pretrain_final = pretrain_base(pool)
    task = load_dataset(pool.dataset)
    todo = pool.candidates()
    with ProcessPoolExecutor(max_workers=jobs) as ex:
        base_future = ex.submit(_base_job, pool, state, spec) if trained is None else None
        futures = [ex.submit(_candidate_job, pool, state, spec, plan, init, manifold, trained is None)
                   for plan, init in todo]
        results = []
        for future in futures:
            results.append(future.result())
            if trained is not None:
                if results[-1]["name"] not in trained:
                    raise ConfigError(f"--rescore: candidate {results[-1]['name']} is not in the results; "
                                      "allowed: results of this pool as it is now")
                results[-1].update(trained[results[-1]["name"]])
            if progress is not None:
                progress(len(results), len(todo), results[-1]["name"])
        base = base_future.result() if trained is None else trained["base"]
    base_mean = statistics.mean(base["scores"])
    base_val_mean = statistics.mean(base["val_scores"])
    for c in results:
        c["gain_mean"] = statistics.mean(c["scores"]) - base_mean
        c["gain_std"] = statistics.stdev(c["scores"]) if len(c["scores"]) > 1 else 0.0
        c["val_gain_mean"] = statistics.mean(c["val_scores"]) - base_val_mean
    table, groups = judge(results)
    ratios = [c["metric_flops"] / c["full_training_flops"] for c in results]
    return {
        "pool": pool.name, "version": pool.version, "tuning_pool": pool.tuning,
        "family": pool.family, "dataset": pool.dataset,
        "score": "neg_test_loss" if task.kind == "lm" else "test_accuracy",
        "recipe": pool.recipe.to_dict(), "seeds": list(pool.seeds),
        "manifold_config": dataclasses.asdict(manifold),
        "base": {"spec": spec, "params": sum(v.numel() for k, v in state.items()
                                             if not k.endswith(("running_mean", "running_var",
                                                                "num_batches_tracked"))),
                 "pretrain": pretrain_final, **base, "score_mean": base_mean, "val_score_mean": base_val_mean},
        "noise": {"base_score_std": statistics.stdev(base["scores"]) if len(base["scores"]) > 1 else 0.0,
                  "median_candidate_score_std": statistics.median(c["gain_std"] for c in results),
                  "median_abs_gain": statistics.median(abs(c["gain_mean"]) for c in results)},
        "candidates": results,
        "equal_param_groups": groups,
        "predictors": table,
        "metric_cost_ratio": statistics.median(ratios),  # metric FLOPs / one full training's FLOPs
        "estimator_cost_ratios": {name: statistics.median(
            training_flops(c["flops"], c["estimator_costs"][name]) / c["full_training_flops"] for c in results)
            for name in ESTIMATORS},
        "probe_sizes": results[0]["probe_sizes"] if results else {},
        "seconds": time.perf_counter() - start,
        "training_reused_from": None if rescore is None else rescore.get("command", "an earlier run"),
        "environment": {"growsearch": __version__, "torch": torch.__version__,
                        "python": platform.python_version(), "cpus": os.cpu_count(), "jobs": jobs},
    }
