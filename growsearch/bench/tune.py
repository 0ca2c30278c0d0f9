"""Choose the manifold metric's hyperparameters -- on the tuning pool only.

Reuses the gains measured by ``growsearch bench predictors --pool digits-mlp`` (the
expensive part) and recomputes only the metric for each configuration proposed by an
Optuna TPE sampler. Objective: Kendall tau against the *validation* gain (a choice never
reads the test split) plus the concordance within
equal-parameter groups; configurations costing more than ``max_cost_ratio`` of one full
training (in FLOPs) are infeasible. Refuses any pool not marked as the tuning pool, so that result
pools never influence a hyperparameter.

    python -m growsearch.bench.tune --results docs/results/digits-mlp.json --out docs/results/tuning.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics

import optuna
import torch

from growsearch.bench import stats
from growsearch.bench.pools import get_pool
from growsearch.bench.predictors import pool_base_model, pretrain_base
from growsearch.checkpoint import write_json
from growsearch.data import load_dataset
from growsearch.errors import ConfigError
from growsearch.grow import ExpansionPlan, grow
from growsearch.metrics import ManifoldConfig, manifold_metric
from growsearch.metrics.cost import training_flops


def tune(results_path: str, trials: int = 40, max_cost_ratio: float = 0.05, seed: int = 0) -> dict:
    with open(results_path) as f:
        results = json.load(f)
    pool = get_pool(results["pool"])
    if not pool.tuning:
        raise ConfigError(f"pool {pool.name} is a result pool; hyperparameters may be tuned only on "
                          "the tuning pool (digits-mlp)")
    torch.set_num_threads(1)
    task = load_dataset(pool.dataset)
    state, spec, _ = pretrain_base(pool)
    base = pool_base_model(state, spec)
    candidates = results["candidates"]
    grown = [grow(base, spec, ExpansionPlan.from_dict(c["plan"]), c["init"]).model for c in candidates]
    gains = [c["val_gain_mean"] for c in candidates]  # a choice: validation gains, never test
    groups = stats.equal_param_groups([c["params"] for c in candidates])
    full_cost = statistics.median(c["full_training_flops"] for c in candidates)

    def objective(trial: optuna.Trial) -> float:
        cfg = ManifoldConfig(
            vertices=trial.suggest_int("vertices", 1, 3),
            steps=trial.suggest_int("steps", 2, 12),
            samples=trial.suggest_int("samples", 1, 4),
            batch_size=trial.suggest_categorical("batch_size", [16, 32, 64]),
            probe_size=trial.suggest_categorical("probe_size", [64, 128, 256]),
            check_points=trial.suggest_int("check_points", 2, 8),
            bisection_steps=trial.suggest_int("bisection_steps", 2, 6),
            lr=trial.suggest_float("lr", 1e-3, 1e-1, log=True),
            reg=trial.suggest_float("reg", 1e-4, 1.0, log=True),
            epsilon=trial.suggest_float("epsilon", 0.02, 1.0, log=True),
            relative_epsilon=trial.suggest_categorical("relative_epsilon", [True, False]),
            init_scale=trial.suggest_float("init_scale", 0.005, 0.5, log=True),
        )
        runs = [manifold_metric(m, task.x_train, task.y_train, cfg) for m in grown]
        ratio = statistics.median(training_flops(c["flops"], r.cost) / c["full_training_flops"]
                                  for c, r in zip(candidates, runs, strict=True))
        values = [r.metric for r in runs]
        tau = stats.kendall(values, gains)
        within, _ = stats.within_group_kendall(values, gains, groups)
        trial.set_user_attr("kendall", tau)
        trial.set_user_attr("kendall_equal_params", within)
        trial.set_user_attr("cost_ratio", ratio)
        if ratio > max_cost_ratio:
            return -2.0 + (max_cost_ratio - ratio)  # infeasible, but still ordered by cost
        return tau + (0.0 if math.isnan(within) else within)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.enqueue_trial({k: v for k, v in dataclasses.asdict(ManifoldConfig()).items()
                         if k in ("vertices", "steps", "samples", "batch_size", "probe_size", "check_points",
                                  "bisection_steps", "lr", "reg", "epsilon", "relative_epsilon",
                                  "init_scale")})
    study.optimize(objective, n_trials=trials)
    rows = sorted(({"params": t.params, "objective": t.value, **t.user_attrs} for t in study.trials),
                  key=lambda r: -r["objective"])
    return {"pool": pool.name, "trials": trials, "max_cost_ratio": max_cost_ratio,
            "full_training_flops": full_cost, "best": rows[0], "top": rows[:10]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", required=True, help="predictor-benchmark JSON of the tuning pool")
    parser.add_argument("--out", required=True)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--max-cost-ratio", type=float, default=0.05)
    args = parser.parse_args()
    result = tune(args.results, args.trials, args.max_cost_ratio)
    write_json(args.out, result)
    print(json.dumps(result["best"], indent=1))


if __name__ == "__main__":
    main()
