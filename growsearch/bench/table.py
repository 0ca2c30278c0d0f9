"""Render benchmark JSON files as the markdown tables of docs/benchmarks.md.

    python -m growsearch.bench.table docs/results > docs/benchmarks.md

Numbers are copied from the JSON files exactly as measured; nothing is edited by hand.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from growsearch.bench.predictors import PREDICTORS

ORDER = ("mnist1d-mlp", "mnist1d-cnn", "text-gpt", "digits-mlp")


def _f(v: Any, digits: int = 3) -> str:
    return "—" if v is None else f"{v:+.{digits}f}" if isinstance(v, float) else str(v)


def predictor_table(result: dict[str, Any]) -> list[str]:
    role = "**tuning pool** (in-sample: the metric's defaults were chosen here)" if result["tuning_pool"] \
        else "result pool"
    noise = result["noise"]
    score = "test accuracy" if result["score"] == "test_accuracy" else "−test loss (nats/char)"
    lines = [
        f"### {result['pool']} (v{result['version']}) — {role}",
        "",
        *([] if "probe_sizes" in result else [
            "*An earlier run (no validation split; proxies on the metric's probe; synflow with BatchNorm; "
            "greedy equal-parameter groups with a tau-a-like within-group figure): not yet regenerated.*", ""]),
        f"`{result.get('command', '')}` — {len(result['candidates'])} candidates, seeds {result['seeds']}, "
        f"{result['seconds']:.0f} s on {result['environment']['cpus']} CPUs with {result['environment']['jobs']} jobs.",
        "",
        f"Score: {score}. Base after the same extra budget: {result['base']['score_mean']:.4f} "
        f"(std over seeds {noise['base_score_std']:.4f}). Median |gain| {noise['median_abs_gain']:.4f}; "
        f"median std of a candidate's score over seeds {noise['median_candidate_score_std']:.4f} (the noise). "
        f"Manifold-metric cost ÷ full training (median, training FLOPs): "
        f"**{result['metric_cost_ratio']:.4f}**. Probe sizes (training examples): "
        + ", ".join(f"{k} {v}" for k, v in result.get("probe_sizes", {}).items()) + ".",
        "",
        "| predictor | Kendall τ_b | 95% CI | Spearman ρ | τ_b within equal-params groups (pairs) |",
        "|---|---|---|---|---|",
    ]
    table = result["predictors"]
    for name in sorted(table, key=lambda n: -table[n]["kendall"]):
        t = table[name]
        bold = "**" if name == "manifold_metric" else ""
        lines.append(f"| {bold}{name}{bold} | {bold}{t['kendall']:+.3f}{bold} | [{t['kendall_ci'][0]:+.2f}, "
                     f"{t['kendall_ci'][1]:+.2f}] | {t['spearman']:+.3f} | {_f(t['kendall_equal_params'])} "
                     f"({t['equal_param_pairs']}) |")
    lines += ["", "<details><summary>candidates</summary>", "",
              "| candidate | params | FLOPs | gain (mean ± std) | manifold | shrink s | L0 | short-train |",
              "|---|---|---|---|---|---|---|---|"]
    for c in sorted(result["candidates"], key=lambda c: -c["gain_mean"]):
        p = c["predictors"]
        lines.append(f"| {c['name']} | {c['params']} | {c['flops']} | {c['gain_mean']:+.4f} ± {c['gain_std']:.4f} "
                     f"| {p['manifold_metric']:+.3f} | {c['manifold']['shrink']:.3f} | {c['manifold']['loss0']:.3f} "
                     f"| {p['short_training']:+.3f} |")
    lines += ["", "Equal-parameter groups (fixed bins 10% wide on a log scale, "
              "⌊log(params) / log 1.1⌋; a candidate's group depends on its own count only): " +
              "; ".join("{" + ", ".join(g) + "}" for g in result["equal_param_groups"]), "", "</details>", ""]
    return lines


def growth_table(result: dict[str, Any]) -> list[str]:
    pts = result["points_per_score_unit"]
    unit = "accuracy points" if result["score"] == "test_accuracy" else "0.01 nats"
    arms = list(result["plans"][0]["arms"])
    lines = [f"### growth vs. scratch — {result['pool']}", "",
             f"`{result.get('command', '')}` — recipe {result['recipe']['epochs']} epochs, seeds {result['seeds']}; "
             f"base score {result['base']['score']:.4f}; base pretraining "
             f"{result['base']['pretrain_compute_examples']} examples (not in the ratios). Default init: "
             f"`{result['default_init']}`; best preserving init here (by validation gain): "
             f"`{result['best_preserving_init']}`. Scores are test scores.", "",
             f"| init | mean gain over the base ({unit}) | plans where scratch's final is reached with ≤ 50% of "
             "its compute | plans with paired diff vs random: 95% lower bound ≥ −0.5 |", "|---|---|---|---|"]
    for init, s in result["summary"].items():
        lines.append(f"| {init} | {s['mean_gain'] * pts:+.2f} | {s['plans_reaching_scratch_at_half_compute']}"
                     f"/{s['plans']} | {s.get('plans_lower_bound_ge_-0.5_points', '—')}"
                     f"{'/' + str(s['plans']) if 'plans_lower_bound_ge_-0.5_points' in s else ''} |")
    lines += ["", "Final score mean ± std over seeds (compute to reach scratch's final ÷ scratch's compute; "
              "— never reached):", "",
              "| plan | params | scratch | " + " | ".join(arms) + " |", "|---|---|---|" + "---|" * len(arms)]
    for row in result["plans"]:
        cells = []
        for init in arms:
            a = row["arms"][init]
            ratio = "—" if a["ratio_to_scratch"] is None else f"{a['ratio_to_scratch']:.2f}"
            cells.append(f"{a['final_mean']:.4f} ± {a['final_std']:.4f} ({ratio})")
        sc = row["scratch"]
        lines.append(f"| {row['plan_name']} | {row['params']} | {sc['final_mean']:.4f} ± {sc['final_std']:.4f} | "
                     + " | ".join(cells) + " |")
    paired = [i for i in arms if i != "random"]
    lines += ["", f"Paired-seed difference against `random` ({unit}: mean [95% interval]) and, after training, "
              "the fraction of new units still copies of another unit (cosine > 0.999):", "",
              "| plan | " + " | ".join(paired) + " |", "|---|" + "---|" * len(paired)]
    for row in result["plans"]:
        cells = []
        for init in paired:
            a = row["arms"][init]
            d = a["vs_random"]
            lo, hi = d["ci95"]
            sym = a["symmetry"]["symmetric_fraction"]
            cells.append(f"{d['mean'] * pts:+.2f} [{lo * pts:+.2f}, {hi * pts:+.2f}]"
                         + ("" if sym is None else f"; {sym:.2f}"))
        lines.append(f"| {row['plan_name']} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def overhead_table(result: dict[str, Any]) -> list[str]:
    local, ray = result["local"], result["ray"]
    lines = ["## Ray Tune executor overhead", "",
             f"`{result.get('command', '')}` — {result['trials']} training trials of {result['epochs_per_trial']} "
             f"epochs, one at a time, on {result['cpus']} CPUs. Trials report to Tune once per rung and at the "
             "end; their per-epoch records ride along.", "",
             "| figure | value |", "|---|---|",
             f"| mean trial time in-process | {local['mean_trial_seconds']:.2f} s |",
             f"| Ray wall time per trial | {ray['wall_seconds'] / result['trials']:.2f} s |",
             f"| **orchestration overhead per trial** (Ray wall − in-process time of the same work) "
             f"| **{result['overhead_per_trial_seconds']:.2f} s = {result['overhead_percent_of_trial']:.1f}%** |"]
    short = result.get("short_epochs")
    if short:
        lines.append(f"| **short epochs**: {short['trials']} MLP trials of {short['epochs_per_trial']} epochs of "
                     f"{short['mean_epoch_seconds'] * 1000:.0f} ms ({short['local']['mean_trial_seconds']:.2f} s "
                     f"in-process) | **{short['overhead_per_trial_seconds']:.2f} s = "
                     f"{short['overhead_percent_of_trial']:.1f}%** |")
    lines += [f"| Ray start-up (ray.init, local instance) | {result['ray_startup_seconds']:.2f} s |",
              f"| peak resident memory of Ray's processes | {result['ray_peak_rss_mb']:.0f} MB |", ""]
    sched = result.get("scheduler")
    if sched:
        lines += ["Idle-time cost of deciding rungs synchronously (the same promoted candidates on Ray, "
                  f"{sched['asha']['concurrent_trials']} concurrent trials; idle = slots × wall − time inside "
                  "trials):", "",
                  "| scheduler | wall | inside trials | idle slot time | epochs trained |", "|---|---|---|---|---|"]
        for name, row in sched.items():
            lines.append(f"| {name} | {row['wall_seconds']:.1f} s | {row['busy_seconds']:.1f} s "
                         f"| {row['idle_slot_seconds']:.1f} s ({row['idle_percent_of_slot_time']:.1f}%) "
                         f"| {row['epochs_trained']} |")
        lines.append("")
    return lines


def _flops(v: float | None) -> str:
    return "—" if v is None else f"{v:.3g}"


def _spread(result: dict[str, Any], name: str, fig: str, fmt: Any) -> str:
    """``mean [min, max]`` over seeds; ``never`` when no seed reached the target."""
    mean, spread = result["strategies"][name][fig], result["spread"][name][fig]
    if spread is None:
        return "never"
    reached = result["strategies"][name]["reached_in_seeds"]
    lo, hi = fmt(spread[0]), fmt(spread[1])
    if mean is None:  # some seeds never reached it: the mean would leave them out
        return f"[{lo}, {hi}] (reached in {reached} of {len(result['seeds'])} seeds)"
    return f"{fmt(mean)} [{lo}, {hi}]"


def search_table(result: dict[str, Any]) -> list[str]:
    first = result["per_seed"][0]
    lines = [f"### {result['pool']}", "",
             f"`{result.get('command', '')}` — {result['n_candidates']} candidates, seeds {result['seeds']}; "
             f"best test score (mean over seeds) {result['best_score']:.4f}, target 0.5 points below; "
             f"k = {result['k']} promoted, ASHA grace {result['asha']['grace']} / η {result['asha']['eta']} on "
             f"validation scores; budget for regret = {result['budget_fraction']:.0%} of train-all "
             f"({_flops(first['budget_compute'])} FLOPs on seed {first['seed']}). Compute in "
             f"{result['compute_unit']}; mean over seeds [min, max].", "",
             "| strategy | compute to target (FLOPs) | ÷ train-all total | seconds to target | total compute (FLOPs) "
             "| regret at budget |", "|---|---|---|---|---|---|"]
    for name in ("train_all", "random_k", "early_stopping_only", "surrogate_and_early_stopping"):
        st = result["strategies"][name]
        extra = (f" (expected over random orders; k draws reach it in {st['reach_rate_within_k']:.0%})"
                 if name == "random_k" else "")
        lines.append(f"| {name} | {_spread(result, name, 'compute_to_target', _flops)}{extra} "
                     f"| {_spread(result, name, 'compute_to_target_vs_train_all', lambda v: f'{v:.1%}')} "
                     f"| {_spread(result, name, 'seconds_to_target', lambda v: f'{v:.1f}')} "
                     f"| {_spread(result, name, 'total_compute', _flops)} "
                     f"| {_spread(result, name, 'regret_at_budget', lambda v: f'{v:.4f}')} |")
    return [*lines, ""]


def faults_table(result: dict[str, Any]) -> list[str]:
    lines = ["## Fault tolerance", "", f"`{result.get('command', '')}` — every fault really caused, in a separate "
             f"process; {result['seconds']:.0f} s.", "",
             "| scenario | injected | survived | results lost | duplicates | identical to an uninterrupted run |",
             "|---|---|---|---|---|---|"]
    for sc in result["scenarios"]:
        lines.append(f"| {sc['scenario']} | {sc['injected']} | {sc['survived']} | {sc['lost']} | {sc['duplicates']} "
                     f"| {sc.get('identical', '—')} |")
    return [*lines, ""]


def summary_table(results: list[dict[str, Any]]) -> list[str]:
    names = ("manifold_metric", "params", "naswot", "short_training")
    lines = ["| pool | role | " + " | ".join(f"τ {n}" for n in names) + " | best predictor (τ) | metric cost ratio |",
             "|---|---|" + "---|" * (len(names) + 2)]
    for r in results:
        t = r["predictors"]
        best = max(t, key=lambda n: t[n]["kendall"])
        lines.append(f"| {r['pool']} | {'tuning' if r['tuning_pool'] else 'result'} | "
                     + " | ".join(f"{t[n]['kendall']:+.3f}" for n in names)
                     + f" | {best} ({t[best]['kendall']:+.3f}) | {r['metric_cost_ratio']:.4f} |")
    return [*lines, ""]


def render(folder: Path) -> str:
    results = {}
    growth = {}
    overhead = faults = None
    search: dict[str, Any] = {}
    for path in sorted(folder.glob("*.json")):
        data = json.loads(path.read_text())
        if "predictors" in data and "candidates" in data:
            results[data["pool"]] = data
        elif "plans" in data and "arms" in data["plans"][0]:
            growth[data["pool"]] = data
        elif "ray_startup_seconds" in data:
            overhead = data
        elif "strategies" in data and "per_seed" in data:  # older files (one seed, examples) are not shown
            search[data["pool"]] = data
        elif "scenarios" in data:
            faults = data
    ordered = [results[p] for p in ORDER if p in results]
    out = ["# Benchmarks", "",
           "Generated by `python -m growsearch.bench.table docs/results > docs/benchmarks.md` from the JSON files "
           "in `docs/results/`, exactly as measured. How the metric is built and judged: docs/metric.md.", "",
           "Every decision a benchmark makes (early stopping, which candidate is picked, which init is best) reads "
           "a validation split held out from the training data (a seeded 10%); the scores reported are test "
           "scores. Compute is in training FLOPs: forward + backward = 3 × the measured forward FLOPs "
           "(`growsearch.metrics.cost.training_flops`; attention counted on every device).", "",
           "## Predictor benchmark: summary", "", *summary_table(ordered),
           f"Predictors compared on identical inputs: {', '.join(PREDICTORS)}.", "",
           "## Predictor benchmark: per pool", ""]
    for r in ordered:
        out += predictor_table(r)
    if growth:
        out += ["## Is growing worth it? Growth vs. training from scratch", ""]
        for p in ORDER:
            if p in growth:
                out += growth_table(growth[p])
    if search:
        out += ["## Search efficiency: compute to find a good candidate", ""]
        for p in ORDER:
            if p in search:
                out += search_table(search[p])
    if overhead is not None:
        out += overhead_table(overhead)
    if faults is not None:
        out += faults_table(faults)
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/results")))
