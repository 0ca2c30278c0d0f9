"""Choose the manifold metric's estimator and hyperparameters -- on the tuning pools only.

Reuses the gains measured by ``growsearch bench predictors --pool <tuning pool>`` (the
expensive part) and recomputes only the metric for each configuration. A choice reads the
*validation* gains (``val_gain_mean``; results written before the validation split existed
carry only test gains, and the output says which split was read). Costs are in training
FLOPs when the results carry them. Refuses any pool not marked as a tuning pool, so that
result pools never influence a choice.

* ``compare``: every named estimator variant of :data:`VARIANTS` (and the travel curve:
  the simplex with its steps set so that it costs 1, 2.5, 5 and 10% of one full
  training), each with Kendall tau, tau within equal-parameter groups, partial tau
  controlling for log #params, cost ratio and vertex displacement.
* ``tune``: Optuna TPE over the simplex's hyperparameters (the first reconstruction's
  tuning; kept for reference).

    python -m growsearch.bench.tune compare --results docs/results/digits-mlp.json \
        --out docs/results/estimators-digits-mlp.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from dataclasses import dataclass
from typing import Any

import optuna
import torch

from growsearch.bench import stats
from growsearch.bench.pools import Pool, get_pool
from growsearch.bench.predictors import pool_base_model, pretrain_base
from growsearch.checkpoint import write_json
from growsearch.data import Task, load_dataset
from growsearch.errors import ConfigError
from growsearch.grow import ExpansionPlan, grow
from growsearch.metrics import ManifoldConfig, manifold_metric
from growsearch.metrics.cost import training_flops

# Named estimator variants compared on the tuning pools (overrides of ManifoldConfig).
VARIANTS: dict[str, dict[str, Any]] = {
    "simplex": {"estimator": "simplex"},
    "simplex_layer_scaled": {"estimator": "simplex", "layer_scaled": True},
    "simplex_relative": {"estimator": "simplex", "relative": True},
    "function": {"estimator": "function"},
    "function_m2_b32": {"estimator": "function", "samples": 2, "batch_size": 32},
    "function_wide_start": {"estimator": "function", "init_scale": 0.1},
    "function_no_reward": {"estimator": "function", "reg": 0.0},
    "function_relative": {"estimator": "function", "relative": True},
    "below": {"estimator": "below"},
    "function_below": {"estimator": "function_below"},
    "ray": {"estimator": "ray"},
    "llc": {"estimator": "llc"},
    "llc_hot": {"estimator": "llc", "lr": 3e-5, "llc_gamma": 100.0},
    "llc_cold": {"estimator": "llc", "lr": 1e-6},
    "llc_short": {"estimator": "llc", "steps": 50, "batch_size": 16},
    # the loss constraint binds for every candidate (issue 20): the scale is searched, not set
    "binding_random": {"estimator": "binding_random"},
    "binding_random_q0.9": {"estimator": "binding_random", "quantile": 0.9},
    "binding_random_m8": {"estimator": "binding_random", "check_points": 8},
    "binding_random_eps_rel": {"estimator": "binding_random", "epsilon": 0.1, "relative_epsilon": True},
    "binding_random_k1": {"estimator": "binding_random", "vertices": 1},
    "binding_function": {"estimator": "binding_function"},
    "binding_function_m8": {"estimator": "binding_function", "check_points": 8},
    "binding_function_q0.5": {"estimator": "binding_function", "quantile": 0.5},
    "binding_simplex": {"estimator": "binding_simplex"},
    "binding_simplex_reward": {"estimator": "binding_simplex", "reg": 0.01},
}
#: The rule that chooses the default, fixed before looking (issue 20 added the first
#: condition): among variants whose loss constraint binds on every candidate and that cost
#: at most this fraction of one full training, the largest tau + tau within groups.
MAX_COST_RATIO = 0.05


def choose(rows: dict[str, dict[str, Any]], max_cost_ratio: float = MAX_COST_RATIO) -> str | None:
    """The variant the fixed rule picks from ``compare``'s rows (None if none is eligible)."""
    eligible = {name: r for name, r in rows.items()
                if r["bound_fraction"] == 1.0 and r["cost_ratio"] <= max_cost_ratio}
    def objective(r: dict[str, Any]) -> float:
        within = r["kendall_equal_params"]
        return r["kendall"] + (0.0 if math.isnan(within) else within)
    return max(eligible, key=lambda name: objective(eligible[name]), default=None)
# The travel curve: vertices trained with a larger step for a budget of these fractions of
# one full training (steps = fraction * full / (K * m * batch)).
TRAVEL_FRACTIONS = (0.01, 0.025, 0.05, 0.1)
TRAVEL_BASE: dict[str, dict[str, Any]] = {
    "simplex_travel": {"estimator": "simplex", "lr": 0.01},
    "function_travel": {"estimator": "function", "lr": 0.05},
}


@dataclass
class TuningPool:
    """A tuning pool's grown candidates and measured gains, ready for re-scoring."""

    pool: Pool
    task: Task
    models: list[torch.nn.Module]
    candidates: list[dict[str, Any]]
    gains: list[float]
    gain_split: str  # "val" (validation gains) or "test" (results from before the split existed)
    log_params: list[float]
    groups: list[list[int]]

    @classmethod
    def load(cls, results_path: str) -> TuningPool:
        with open(results_path) as f:
            results = json.load(f)
        pool = get_pool(results["pool"])
        if not pool.tuning:
            raise ConfigError(f"pool {pool.name} is a result pool; estimators may be chosen only on "
                              "the tuning pools (" + ", ".join(p for p in _tuning_names()) + ")")
        torch.set_num_threads(1)
        task = load_dataset(pool.dataset)
        state, spec, _ = pretrain_base(pool)
        base = pool_base_model(state, spec)
        cands = results["candidates"]
        models = [grow(base, spec, ExpansionPlan.from_dict(c["plan"]), c["init"]).model for c in cands]
        split = "val" if all("val_gain_mean" in c for c in cands) else "test"
        gains = [c["val_gain_mean"] if split == "val" else c["gain_mean"] for c in cands]
        return cls(pool, task, models, cands, gains, split, [math.log(c["params"]) for c in cands],
                   stats.equal_param_groups([c["params"] for c in cands]))

    def cost_ratio(self, candidate: dict[str, Any], cost: float) -> float:
        """The metric's cost over one full training: in FLOPs when the results carry them."""
        if "full_training_flops" in candidate:
            return training_flops(candidate["flops"], cost) / candidate["full_training_flops"]
        return cost / candidate["full_training_cost"]

    def evaluate(self, overrides: dict[str, Any]) -> dict[str, Any]:
        """Score every candidate with ``overrides`` and judge the ranking against the gains."""
        cfg = ManifoldConfig(**{**self.pool.manifold, **overrides})
        runs = [manifold_metric(m, self.task.x_train, self.task.y_train, cfg) for m in self.models]
        values = [r.metric for r in runs]
        within, pairs = stats.within_group_kendall(values, self.gains, self.groups)
        return {"overrides": overrides, "kendall": stats.kendall(values, self.gains),
                "bound_fraction": sum(bool(r.bound) for r in runs) / len(runs),
                "kendall_vs_weight_norm": stats.kendall(values, [r.weight_norm_volume for r in runs]),
                "scales": [r.shrink for r in runs],
                "kendall_equal_params": within, "equal_param_pairs": pairs,
                "kendall_partial_params": stats.partial_kendall(values, self.gains, self.log_params),
                "cost_ratio": statistics.median(self.cost_ratio(c, r.cost)
                                                for c, r in zip(self.candidates, runs, strict=True)),
                "displacement": statistics.median(statistics.mean(r.displacement) if r.displacement else 0.0
                                                  for r in runs),
                "seconds": statistics.median(r.seconds for r in runs), "values": values}


def _tuning_names() -> list[str]:
    from growsearch.bench.pools import POOLS

    return [p.name for p in POOLS.values() if p.tuning]


def travel_variants(full_cost: float) -> dict[str, dict[str, Any]]:
    """The travel curve's variants for a pool whose full training costs ``full_cost`` examples."""
    out = {}
    for name, base in TRAVEL_BASE.items():
        preset = ManifoldConfig(estimator=base["estimator"])
        per_step = preset.vertices * preset.samples * preset.batch_size
        for frac in TRAVEL_FRACTIONS:
            steps = max(1, round(frac * full_cost / per_step))
            out[f"{name}@{frac:g}"] = {**base, "steps": steps}
    return out


def compare(results_path: str, names: list[str] | None = None, travel: bool = True) -> dict[str, Any]:
    """Every named variant (or ``names``) on one tuning pool."""
    tp = TuningPool.load(results_path)
    variants = {k: v for k, v in VARIANTS.items() if names is None or k in names}
    if travel:
        variants.update(travel_variants(statistics.median(c["full_training_cost"] for c in tp.candidates)))
    rows = {}
    for name, overrides in variants.items():
        rows[name] = tp.evaluate(overrides)
        r = rows[name]
        print(f"{tp.pool.name} {name:28s} tau {r['kendall']:+.3f} within {r['kendall_equal_params']:+.3f} "
              f"partial {r['kendall_partial_params']:+.3f} cost {r['cost_ratio']:.4f} "
              f"bound {r['bound_fraction']:.2f} vs weight norms {r['kendall_vs_weight_norm']:+.3f} "
              f"displacement {r['displacement']:.3f}", flush=True)
    choice = choose(rows)
    print(f"{tp.pool.name}: the rule picks {choice}", flush=True)
    return {"pool": tp.pool.name, "tuning_pool": True, "gain_split": tp.gain_split,
            "gains": tp.gains, "variants": rows, "rule": {"max_cost_ratio": MAX_COST_RATIO,
                                                          "requires_bound": True, "choice": choice}}


def tune(results_path: str, trials: int = 40, max_cost_ratio: float = 0.05, seed: int = 0) -> dict:
    """Optuna TPE over the simplex's hyperparameters on one tuning pool (objective: tau +
    within-group tau; over ``max_cost_ratio`` of one full training is infeasible)."""
    tp = TuningPool.load(results_path)

    def objective(trial: optuna.Trial) -> float:
        overrides = dict(
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
        row = tp.evaluate({"estimator": "simplex", **overrides})
        within = row["kendall_equal_params"]
        for key in ("kendall", "kendall_equal_params", "cost_ratio"):
            trial.set_user_attr(key, row[key])
        if row["cost_ratio"] > max_cost_ratio:
            return -2.0 + (max_cost_ratio - row["cost_ratio"])  # infeasible, but still ordered by cost
        return row["kendall"] + (0.0 if math.isnan(within) else within)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=trials)
    rows = sorted(({"params": t.params, "objective": t.value, **t.user_attrs} for t in study.trials),
                  key=lambda r: -r["objective"])
    return {"pool": tp.pool.name, "trials": trials, "max_cost_ratio": max_cost_ratio,
            "gain_split": tp.gain_split, "best": rows[0], "top": rows[:10]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("compare", "tune"))
    parser.add_argument("--results", required=True, help="predictor-benchmark JSON of a tuning pool")
    parser.add_argument("--out", required=True)
    parser.add_argument("--variants", nargs="*", help="compare only these named variants")
    parser.add_argument("--no-travel", action="store_true", help="compare: skip the travel curve")
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--max-cost-ratio", type=float, default=0.05)
    args = parser.parse_args()
    if args.mode == "compare":
        result = compare(args.results, args.variants, travel=not args.no_travel)
    else:
        result = tune(args.results, args.trials, args.max_cost_ratio)
    write_json(args.out, result)


if __name__ == "__main__":
    main()
