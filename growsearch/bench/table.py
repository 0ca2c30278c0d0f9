"""Render benchmark JSON files as the markdown tables of docs/benchmarks.md, and each
headline result as a figure (docs/headline-POOL.png).

    growsearch bench table --results docs/results --out docs/benchmarks.md
    python -m growsearch.bench.table docs/results > docs/benchmarks.md   (tables only)

Numbers are copied from the JSON files exactly as measured; nothing is edited by hand.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from growsearch.bench.headline import BUDGET_ARMS, BUDGETS, STRATEGIES, mean_curve, score_at, shifted
from growsearch.bench.predictors import PREDICTORS
from growsearch.bench.search_efficiency import STRATEGIES as SEARCH_STRATEGIES

ORDER = ("mnist1d-mlp", "mnist1d-cnn", "text-gpt", "digits-mlp", "digits-cnn")


def _f(v: Any, digits: int = 3) -> str:
    return "—" if v is None else f"{v:+.{digits}f}" if isinstance(v, float) else str(v)


def _partial(entry: dict[str, Any]) -> str:
    v = entry.get("kendall_partial_params")
    return "—" if v is None or v != v else f"{v:+.3f}"  # NaN: the predictor is the control itself


def predictor_table(result: dict[str, Any]) -> list[str]:
    role = "**tuning pool** (in-sample: choices are made on tuning pools only)" if result["tuning_pool"] \
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
        f"{result['seconds']:.0f} s on {result['environment']['cpus']} CPUs with {result['environment']['jobs']} jobs."
        + (f" Measured with {result['code']}." if result.get("code") else "")
        + (f" Predictors re-scored in that time; the trained scores are those of `{result['training_reused_from']}`."
           if result.get("training_reused_from") else ""),
        "",
        f"Score: {score}. Base after the same extra budget: {result['base']['score_mean']:.4f} "
        f"(std over seeds {noise['base_score_std']:.4f}). Median |gain| {noise['median_abs_gain']:.4f}; "
        f"median std of a candidate's score over seeds {noise['median_candidate_score_std']:.4f} (the noise). "
        f"Manifold-metric cost ÷ full training (median, "
        f"{'training FLOPs' if 'probe_sizes' in result else 'forward+backward examples'}): "
        f"**{result['metric_cost_ratio']:.4f}**. Probe sizes (training examples): "
        + ", ".join(f"{k} {v}" for k, v in result.get("probe_sizes", {}).items()) + ".",
        "",
        "| predictor | Kendall τ_b | 95% CI | Spearman ρ | τ_b within equal-params groups (pairs) "
        "| partial τ (log #params controlled) | τ_b vs the data-free weight-norm formula |",
        "|---|---|---|---|---|---|---|",
    ]
    table = result["predictors"]
    bound = [c["manifold"].get("bound") for c in result["candidates"]]
    if any(b is not None for b in bound):
        lines[-4] += (f" The default manifold estimator's loss constraint bound on **{sum(b is True for b in bound)}"
                      f" of {len(bound)}** candidates.")
    for name in sorted(table, key=lambda n: -table[n]["kendall"]):
        t = table[name]
        bold = "**" if name == "manifold_metric" else ""
        lines.append(f"| {bold}{name}{bold} | {bold}{t['kendall']:+.3f}{bold} | [{t['kendall_ci'][0]:+.2f}, "
                     f"{t['kendall_ci'][1]:+.2f}] | {t['spearman']:+.3f} | {_f(t['kendall_equal_params'])} "
                     f"({t['equal_param_pairs']}) | {_partial(t)} | {_f(t.get('kendall_vs_weight_norm'))} |")
    lines += ["", "<details><summary>candidates</summary>", "",
              "| candidate | params | FLOPs | gain (mean ± std) | manifold | s (shrink or bound scale) or LLC (llc) "
              "| bound | L0 | short-train |",
              "|---|---|---|---|---|---|---|---|---|"]
    for c in sorted(result["candidates"], key=lambda c: -c["gain_mean"]):
        p = c["predictors"]
        lines.append(f"| {c['name']} | {c['params']} | {c['flops']} | {c['gain_mean']:+.4f} ± {c['gain_std']:.4f} "
                     f"| {p['manifold_metric']:+.3f} | {c['manifold']['shrink']:.3f} "
                     f"| {dict(((True, 'yes'), (False, 'no'))).get(c['manifold'].get('bound'), '—')} "
                     f"| {c['manifold']['loss0']:.3f} "
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


def growth_summary_table(results: list[dict[str, Any]]) -> list[str]:
    """One row per init: mean gain over the base per pool (points), and over all pools how
    many plans reach scratch's final with <= 50% of its compute and how many have a paired
    difference against random whose 95% lower bound is >= -0.5 points."""
    inits = list(results[0]["summary"])
    lines = ["| init | " + " | ".join(f"mean gain, {r['pool']}" for r in results)
             + " | reaches scratch with ≤ 50% compute | vs random: lower bound ≥ −0.5 |",
             "|---|" + "---|" * (len(results) + 2)]
    for init in inits:
        rows = [r["summary"][init] for r in results]
        plans = sum(s["plans"] for s in rows)
        half = sum(s["plans_reaching_scratch_at_half_compute"] for s in rows)
        low = [s.get("plans_lower_bound_ge_-0.5_points") for s in rows]
        lines.append(f"| {init} | " + " | ".join(f"{s['mean_gain'] * r['points_per_score_unit']:+.2f}"
                                                 for s, r in zip(rows, results, strict=True))
                     + f" | {half}/{plans} | " + ("—" if None in low else f"{sum(low)}/{plans}") + " |")
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


def _spread(view: dict[str, Any], name: str, fig: str, fmt: Any, result: dict[str, Any]) -> str:
    """``mean [min, max]`` over ``result``'s seeds of a figure of ``view`` (the whole pool's
    or the budget's); ``never`` when no seed reached the target."""
    mean, spread = view["strategies"][name][fig], view["spread"][name][fig]
    if spread is None:
        return "never"
    reached = view["strategies"][name]["reached_in_seeds"]
    lo, hi = fmt(spread[0]), fmt(spread[1])
    if mean is None:  # some seeds never reached it: the mean would leave them out
        return f"[{lo}, {hi}] (reached in {reached} of {len(result['seeds'])} seeds)"
    return f"{fmt(mean)} [{lo}, {hi}]"


def _rate(r: float) -> str:
    """A reach rate: 0% and 100% only when exact (one order in 500 missing is 99.8%)."""
    return f"{r:.0%}" if r in (0.0, 1.0) else f"{r:.1%}"


def _averaged(st: dict[str, Any]) -> bool:
    """Whether a strategy's figures are averaged over random orders that gave different replays
    (a surrogate without ties is replayed once: its figures are those of one order)."""
    return "reach_rate" in st and st.get("orders_replayed", 2) > 1


def _when_reached(view: dict[str, Any], name: str, fig: str, fmt: Any, result: dict[str, Any]) -> str:
    """A figure to target of a strategy averaged over random orders, some of which miss the
    target: the mean over the orders that reach it [min, max over seeds]."""
    fig = fig.replace("_to_target", "_to_target_when_reached")
    mean, spread = view["strategies"][name].get(fig), view["spread"][name].get(fig)
    if spread is None:
        return "never"
    rates = view["strategies"][name]["reach_rate_by_seed"]
    if mean is None:
        return (f"[{fmt(spread[0])}, {fmt(spread[1])}] when reached (no order reaches it on "
                f"{sum(r == 0 for r in rates)} of {len(result['seeds'])} seeds)")
    return f"{fmt(mean)} [{fmt(spread[0])}, {fmt(spread[1])}] when reached"


def _strategy_rows(result: dict[str, Any], view: dict[str, Any]) -> list[str]:
    """One row per strategy of ``view`` (the whole pool's figures, or the budget's). A strategy
    averaged over random orders shows its reach rate (share of the orders, by seed); when some
    order misses the target, its figures to target are the means over the orders that reach it."""
    rows = ["| strategy | compute to target (FLOPs) | ÷ train-all total | seconds to target | total compute (FLOPs) "
            "| regret at budget |", "|---|---|---|---|---|---|"]
    order = {name: i for i, name in enumerate(SEARCH_STRATEGIES)}  # JSON keys come back sorted
    for name, st in sorted(view["strategies"].items(), key=lambda kv: order.get(kv[0], len(order))):
        extra, cell = "", _spread
        if name == "random_k":
            extra = f" (expected over random orders; k draws reach it in {st['reach_rate_within_k']:.0%})"
        elif _averaged(st):
            what = f"{st['draws']} draws" if "draws" in st else f"{st['orders']} random orders"
            rates = st["reach_rate_by_seed"]
            extra = (f" (mean over {what}; reached in {_rate(st['reach_rate'])} of them"
                     + ("" if min(rates) == 1 else ", by seed " + " / ".join(_rate(r) for r in rates)) + ")")
            if min(rates) < 1:
                cell = _when_reached
        elif "reach_rate_within_k" in st:  # a result from before the replay over random orders
            extra = f" (mean of {st['draws']} draws; {st['reach_rate_within_k']:.0%} of them reach it)"
        rows.append(f"| {name} | {cell(view, name, 'compute_to_target', _flops, result)}{extra} "
                    f"| {cell(view, name, 'compute_to_target_vs_train_all', lambda v: f'{v:.1%}', result)} "
                    f"| {cell(view, name, 'seconds_to_target', lambda v: f'{v:.1f}', result)} "
                    f"| {_spread(view, name, 'total_compute', _flops, result)} "
                    f"| {_spread(view, name, 'regret_at_budget', lambda v: f'{v:.4f}', result)} |")
    return rows


def search_table(result: dict[str, Any]) -> list[str]:
    first = result["per_seed"][0]
    lines = [f"### {result['pool']}", "",
             f"`{result.get('command', '')}`"
             + (f" (curves as measured; replayed with `{result['replayed']['command']}`)"
                if result.get("replayed") else "")
             + f" — {result['n_candidates']} candidates, seeds {result['seeds']}; "
             f"best test score (mean over seeds) {result['best_score']:.4f}, target 0.5 points below; "
             f"k = {result['k']} promoted, ASHA grace {result['asha']['grace']} / η {result['asha']['eta']} on "
             f"validation scores; budget for regret = {result['budget_fraction']:.0%} of train-all "
             f"({_flops(first['budget_compute'])} FLOPs on seed {first['seed']}). Compute in "
             f"{result['compute_unit']}; mean over seeds [min, max]."
             + (f" Whatever depends on the order candidates are taken in (train-all's and ASHA's order, random "
                f"pruning's draw, the order among a surrogate's tied candidates) is averaged over the same "
                f"{result['orders']['count']} random orders per seed, never the pool's own (ascending size) order; "
                "such a strategy reaches the target on a seed when every order does, and otherwise shows the "
                "share of the orders that do and its figures in those orders (`when reached`)."
                if "orders" in result else "")
             + (" `budgeted_manifold` / `budgeted_params` / `budgeted_no_surrogate`: growsearch's budgeted search "
                "(`budget:` with `surrogate: manifold` / `params` / `none`; the real `BudgetedSearch`, its screens "
                "and trainings served from the recorded curves, screening at the manifold metric's recorded cost "
                "except with `none`), seeded with the pool's seed, no random orders: its regret from a search given "
                "the regret budget, its compute to target and total compute from a search given train-all's compute."
                if any(name.startswith("budgeted_") for name in result["strategies"]) else ""), "",
             *_strategy_rows(result, result), ""]
    budget = result.get("budget")
    if budget is not None:
        default = " (default: the upper edge of the second-largest equal-parameter group)"
        lines += [f"Under a parameter budget that binds: max_params {budget['max_params']}"
                  f"{default if budget['max_params_default'] else ''}"
                  f"; {budget['n_candidates']} of {result['n_candidates']} candidates fit, "
                  f"{budget['candidates_at_cap']} of them in the equal-parameter bin at the cap; best test score "
                  f"{budget['best_score']:.4f}, k = {budget['k']}.", "", *_strategy_rows(result, budget), ""]
    return lines


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
    lines = ["| pool | role | manifold_metric τ / within groups / partial | τ params | best other τ "
             "| best other within groups | short_training τ / within | metric cost ratio |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        t = r["predictors"]
        others = [n for n in t if not n.startswith("manifold")]
        best = max(others, key=lambda n: t[n]["kendall"])
        best_within = max(others, key=lambda n: _finite(t[n]["kendall_equal_params"]))
        m, st = t["manifold_metric"], t["short_training"]
        lines.append(f"| {r['pool']} | {'tuning' if r['tuning_pool'] else 'result'} "
                     f"| {m['kendall']:+.3f} / {_f(m['kendall_equal_params'])} / {_partial(m)} "
                     f"| {t['params']['kendall']:+.3f} | {best} ({t[best]['kendall']:+.3f}) "
                     f"| {best_within} ({_f(t[best_within]['kendall_equal_params'])}) "
                     f"| {st['kendall']:+.3f} / {_f(st['kendall_equal_params'])} | {r['metric_cost_ratio']:.4f} |")
    return [*lines, ""]


def _finite(v: Any) -> float:
    return v if isinstance(v, float) and v == v else -2.0


def estimator_table(result: dict[str, Any]) -> list[str]:
    """The named estimators on a tuning pool (python -m growsearch.bench.tune compare)."""
    lines = [f"### {result['pool']} — tuning pool (every estimator variant; choices are made here)", "",
             "| variant | overrides | Kendall τ | τ within groups | partial τ | cost ÷ full training "
             "| displacement ‖v−θ0‖/‖θ0‖ |", "|---|---|---|---|---|---|---|"]
    for name, v in result["variants"].items():
        over = ", ".join(f"{k}={val}" for k, val in v["overrides"].items())
        lines.append(f"| {name} | {over} | {v['kendall']:+.3f} | {_f(v['kendall_equal_params'])} "
                     f"| {_partial(v)} | {v['cost_ratio']:.4f} | {v['displacement']:.3f} |")
    return [*lines, ""]


_GROWN = ("grow_largest", "growsearch", "growsearch_random_pruning")


def _points(result: dict[str, Any], value: float | None) -> str:
    """A score in the table's unit: accuracy points (x100), or test loss in nats."""
    if value is None:
        return "—"
    return f"{100 * value:.1f}" if result["score"] == "test_accuracy" else f"{-value:.3f}"


def _points_interval(result: dict[str, Any], values: list[float]) -> str:
    """`` [min, max]`` of ``values`` in the table's unit, lowest first: for a loss pool the
    scores are negated losses, so the lowest loss shown comes from the highest score."""
    if not values:
        return ""
    lo, hi = (min(values), max(values)) if result["score"] == "test_accuracy" else (max(values), min(values))
    return f" [{_points(result, lo)}, {_points(result, hi)}]"


def headline_table(result: dict[str, Any]) -> list[str]:
    unit = result["scratch_largest_compute"]
    acc = result["score"] == "test_accuracy"
    what = "test accuracy (%)" if acc else "test loss (nats/token, lower is better)"
    lines = [f"### {result['pool']}", "",
             f"`{result.get('command', '')}` — seeds {result['seeds']}, {result['seconds']:.0f} s. "
             f"Constraint: `{result['space']['file']}` {result['space']['constraints']}; largest allowed "
             f"architecture `{result['largest']['plan_name']}` ({result['largest']['params']} parameters). "
             f"Budget unit: scratch_largest's full training = {unit:.3g} training FLOPs; the base's pretraining "
             f"= {result['base']['pretrain_compute'] / unit:.2f} of it. "
             f"Base: {_points(result, result['base']['score'])}. Compute columns: ÷ scratch_largest's full training. "
             f"Decisions on the `{result['decision_split']}` split; scores: {what} of the model with the best "
             "validation score so far, mean over seeds [min, max].", "",
             "| strategy | 25% | 50% | 100% | 25% (+pretraining) | 50% (+pretraining) | 100% (+pretraining) "
             "| compute to scratch_largest's final | compute spent in all |", "|---|---|---|---|---|---|---|---|---|"]
    for name in STRATEGIES:
        cells = []
        for b in BUDGETS:
            per_seed = result["at_budget_per_seed"][name][str(b)]
            known = [v for v in per_seed if v is not None]
            spread = _points_interval(result, known)
            cells.append(_points(result, result["at_budget"][name][str(b)]) + spread)
        cells += [_points(result, result["at_budget_with_pretraining"][name][str(b)]) for b in BUDGETS]
        ratio = result["ratio_to_scratch_largest_final"][name]
        bold = "**" if name == "growsearch" else ""
        reach = "never" if ratio is None else f"{ratio:.0%}"
        spent = result["total_compute_vs_unit"][name]
        lines.append(f"| {bold}{name}{bold} | " + " | ".join(cells) + f" | {reach} | {spent:.0%} |")
    g = result["goals"]
    behind = g["growsearch_best_at_every_budget"]["behind"]
    margin = g["margin_over_scratch_largest"]
    lines += ["", "Goals (base as a sunk cost):", "",
              f"- growsearch ≥ every other strategy at every budget: {_met(not behind)}"
              + _behind(result, behind, "growsearch"),
              _margin_line(result, margin),
              f"- scratch_largest's final reached with ≤ 50% of its compute: "
              f"{_met(g['half_compute_to_scratch_final']['met'])} — "
              + ("never reached" if g["half_compute_to_scratch_final"]["ratio"] is None
                 else f"{g['half_compute_to_scratch_final']['ratio']:.0%}"), ""]
    if "budgeted" in result:  # older results have no budgeted arms
        lines += budgeted_table(result)
    return lines


def _met(ok: bool) -> str:
    return f"**{'met' if ok else 'not met'}**"


def _behind(result: dict[str, Any], behind: list[dict[str, Any]], arm: str) -> str:
    """`` — behind X at 25% (ours vs theirs); ...`` for a goal's list of budgets where ``arm`` trails."""
    return "" if not behind else " — behind " + "; ".join(
        f"{b['strategy']} at {float(b['budget']):.0%} ({_points(result, b[arm])} vs "
        f"{_points(result, b['other'])})" for b in behind)


def _margin_line(result: dict[str, Any], margin: dict[str, Any]) -> str:
    """The goal line of the margin over scratch_largest at every budget."""
    acc = result["score"] == "test_accuracy"
    return (f"- ≥ {100 * margin['required'] if acc else margin['required']:g} {'point' if acc else 'nats'} over "
            f"scratch_largest at every budget: {_met(margin['met'])} — "
            + ", ".join(f"{float(b):.0%}: {'—' if d is None else (f'{100 * d:+.1f}' if acc else f'{d:+.3f}')}"
                        for b, d in margin["by_budget"].items()))


def budgeted_table(result: dict[str, Any]) -> list[str]:
    """Growsearch given each budget (one run per budget and seed, scored at its own budget)
    and its ablations, beside the five strategies read at the same budgets; the issue's
    goals for the budgeted arm."""
    bd = result["budgeted"]
    keys = [str(b) for b in bd["budgets"]]
    head = " | ".join(f"{float(b):.0%}" for b in keys)
    lines = ["Growsearch **given** each budget (`budget: {full_trainings: B}`, one run per budget and seed, "
             "scored at its own budget; the ablations change only the surrogate), beside the strategies above "
             "read at the same budgets (base as a sunk cost; past its horizon `scratch_search` is read from the "
             "same search run on to the largest budget). Compute: most spent by any seed ÷ its budget; compute "
             "at which the arm's mean curve reaches scratch_largest's final, ÷ scratch_largest's full training.", "",
             f"| strategy | {head} | spent ÷ budget | reaches scratch_largest's final |",
             "|---|" + "---|" * len(keys) + "---|---|"]
    for name in BUDGET_ARMS:
        row = bd["arms"][name]
        cells = [_points(result, row["at_own_budget"][b])
                 + _points_interval(result, [v for v in row["at_own_budget_per_seed"][b] if v is not None])
                 for b in keys]
        spent = " / ".join(f"{row['spent_vs_budget'][b]:.0%}" for b in keys)
        reach = " / ".join("never" if row["ratio_to_scratch_largest_final"][b] is None
                           else f"{row['ratio_to_scratch_largest_final'][b]:.0%}" for b in keys)
        bold = "**" if name == "growsearch_budget" else ""
        lines.append(f"| {bold}{name}{bold} | " + " | ".join(cells) + f" | {spent} | {reach} |")
    for name in STRATEGIES:
        cells = [_points(result, bd["others_at_budget"][name][b]) for b in keys]
        lines.append(f"| {name} (read at the budget) | " + " | ".join(cells) + " | | |")
    g = result["goals"].get("growsearch_budget")
    if g is None:
        return [*lines, ""]
    behind, half, bare = (g["best_at_every_budget"]["behind"], g["half_compute_to_scratch_final"],
                          g["no_surrogate_vs_random_pruning"])
    lines += ["", "Goals for growsearch given a budget (issue 21; base as a sunk cost):", "",
              f"- ≥ every other strategy at every budget: {_met(not behind)}"
              + _behind(result, behind, "growsearch_budget"),
              _margin_line(result, g["margin_over_scratch_largest"]),
              f"- scratch_largest's final ({_points(result, half['target'])}) reached when given ≤ 50% of its "
              f"compute: {_met(half['met'])} — "
              + ", ".join(f"given {float(b):.0%}: {_points(result, v)}"
                          for b, v in half["at_budgets_up_to_half"].items()),
              f"- without a surrogate, no worse than random pruning + early stopping at any budget: {_met(bare['met'])}"
              + " — " + ", ".join(f"{float(b):.0%}: {_points(result, bare['no_surrogate'][b])} vs "
                                  f"{_points(result, bare['random_pruning'][b])}" for b in bare["no_surrogate"]), ""]
    return lines


def headline_figure(result: dict[str, Any], path: Path) -> Path:
    """Score vs. compute (÷ scratch_largest's full training), one line per strategy (mean
    over seeds) with a band from the lowest to the highest seed; left: the base as a sunk
    cost, right: its pretraining counted in."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    unit = result["scratch_largest_compute"]
    acc = result["score"] == "test_accuracy"
    pretrain = result["base"]["pretrain_compute"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), sharey=True)
    right = max(1.05, max(r["total_compute"] + (pretrain if n in _GROWN else 0.0)
                          for n in STRATEGIES for r in result["runs"][n]) / unit,
                1.05 * max(result.get("budgeted", {}).get("budgets", [0.0])))
    for ax, with_pre in zip(axes, (False, True), strict=True):
        for name in STRATEGIES:
            curves = [r["curve"] for r in result["runs"][name]]
            if with_pre and name in _GROWN:
                curves = [shifted(c, pretrain) for c in curves]
            xs = [x for x, _ in mean_curve(curves)] + [right * unit]
            rows = [[score_at(c, x) for c in curves] for x in xs]
            keep = [i for i, row in enumerate(rows) if all(v is not None for v in row)]
            if not keep:
                continue
            sign = 100.0 if acc else -1.0
            x = [xs[i] / unit for i in keep]
            mean = [sign * sum(rows[i]) / len(rows[i]) for i in keep]
            lo = [min(sign * v for v in rows[i]) for i in keep]
            hi = [max(sign * v for v in rows[i]) for i in keep]
            width = 2.6 if name == "growsearch" else 1.4
            (line,) = ax.plot(x, mean, drawstyle="steps-post", linewidth=width, label=name)
            ax.fill_between(x, lo, hi, step="post", alpha=0.15, color=line.get_color())
        budgeted = result.get("budgeted")
        if budgeted is not None and not with_pre:  # each budget its own run: one marker per budget
            sign = 100.0 if acc else -1.0
            for name, marker in zip(BUDGET_ARMS, ("o", "s", "^"), strict=True):
                pts = [(float(b), v) for b, v in budgeted["arms"][name]["at_own_budget"].items() if v is not None]
                ax.plot([b for b, _ in pts], [sign * v for _, v in pts], marker=marker, linestyle="--",
                        linewidth=2.0 if name == "growsearch_budget" else 1.0, label=f"{name} (given B)")
        for b in BUDGETS:
            ax.axvline(b, color="grey", linestyle=":", linewidth=0.8)
        ax.set_xlim(0, right)
        ax.set_xlabel("training FLOPs ÷ scratch_largest's full training")
        ax.set_title("base pretraining counted in" if with_pre else "base as a sunk cost (the user has it)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)" if acc else "test loss (nats)")
    axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle(f"{result['pool']}: best model so far (chosen on validation), mean and range over "
                 f"{len(result['seeds'])} seeds")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def render(folder: Path) -> str:
    results = {}
    growth = {}
    overhead = faults = None
    scale: list[dict[str, Any]] = []  # growsearch bench scale: one file or several (merged)
    search: dict[str, Any] = {}
    estimators: list[dict[str, Any]] = []
    headline: dict[str, Any] = {}
    for path in sorted(folder.glob("*.json")):
        data = json.loads(path.read_text())
        if "variants" in data and data.get("tuning_pool"):
            estimators.append(data)
        elif "at_budget" in data:
            headline[data["pool"]] = data
        elif "predictors" in data and "candidates" in data:
            results[data["pool"]] = data
        elif "plans" in data and "arms" in data["plans"][0]:
            growth[data["pool"]] = data
        elif data.get("benchmark") == "scale":
            scale.append(data)
        elif "ray_startup_seconds" in data:
            overhead = data
        elif "strategies" in data and "per_seed" in data:  # older files (one seed, examples) are not shown
            search[data["pool"]] = data
        elif "scenarios" in data:
            faults = data
    ordered = [results[p] for p in ORDER if p in results]
    out = ["# Benchmarks", "",
           "Generated by `growsearch bench table --results docs/results --out docs/benchmarks.md` from the JSON files "
           "in `docs/results/`, exactly as measured. How the metric is built and judged: docs/metric.md.", "",
           "Every decision a benchmark makes (early stopping, which candidate is picked, which init is best) reads "
           "a validation split held out from the training data (a seeded 10%); the scores reported are test "
           "scores. Compute is in training FLOPs: forward + backward = 3 × the measured forward FLOPs "
           "(`growsearch.metrics.cost.training_flops`; attention counted on every device).", "",
           *(["## Headline: growsearch vs. what a user would do instead, at equal compute", "",
              "Figures: `docs/headline-POOL.png` (rendered by `growsearch bench table`).", ""]
             + [line for p in [*ORDER, *sorted(set(headline) - set(ORDER))] if p in headline
                for line in headline_table(headline[p])]),
           "## Predictor benchmark: summary", "", *summary_table(ordered),
           f"Predictors compared on identical inputs: {', '.join(PREDICTORS)}.", "",
           "## Predictor benchmark: per pool", ""]
    for r in ordered:
        out += predictor_table(r)
    if estimators:
        out += ["## Manifold-metric estimators on the tuning pool", "",
                "`python -m growsearch.bench.tune compare --results docs/results/<pool>.json` — each named "
                "estimator (and the travel curve: vertices trained for 1, 2.5, 5 and 10% of one full training) "
                "re-scored on the tuning pool's measured gains. Chosen here, never on a result pool.", ""]
        for e in estimators:
            out += estimator_table(e)
    if growth:
        out += ["## Is growing worth it? Growth vs. training from scratch", "",
                *growth_summary_table([growth[p] for p in ORDER if p in growth])]
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
    if scale:
        from growsearch.bench.scale import merge_results, scale_table

        out += scale_table(merge_results(scale))
    return "\n".join(out) + "\n"


def render_all(folder: Path, out: Path) -> list[Path]:
    """Write the markdown of ``folder``'s results to ``out`` and every headline figure
    beside it; the paths written."""
    from growsearch.checkpoint import atomic_write

    written = []
    scale = []
    for path in sorted(folder.glob("*.json")):
        data = json.loads(path.read_text())
        if "at_budget" in data:
            written.append(headline_figure(data, out.parent / f"headline-{data['pool']}.png"))
        elif data.get("benchmark") == "scale":
            scale.append(data)
    if scale:
        from growsearch.bench.scale import merge_results, scale_figure

        written += [p for p in [scale_figure(merge_results(scale), out.parent / "scale.png")] if p is not None]
    atomic_write(out, render(folder))
    return [*written, out]


if __name__ == "__main__":
    sys.stdout.write(render(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/results")))
