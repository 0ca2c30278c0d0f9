"""Leaderboard, plots and the best model, from a results folder's candidate records.

``write_report`` is called at the end of every search and by ``growsearch report DIR``
(which re-renders everything from the records, computing nothing).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from growsearch.checkpoint import atomic_write, write_json
from growsearch.errors import ConfigError
from growsearch.faults import maybe_inject
from growsearch.metrics.cost import training_flops
from growsearch.results import SearchState, read_json

STAGE_ORDER = {"completed": 0, "stopped_early": 1, "paused": 2, "promoted": 2, "screened": 3, "failed": 4,
               "rejected": 5}
COLUMNS = ["candidate", "plan", "kind", "init", "params", "flops", "manifold_metric", "surrogate",
           "max_abs_output_diff", "stage", "reason", "epochs", "val_score", "test_score", "final_accuracy",
           "final_loss", "gain", "test_gain", "compute_fb", "compute_flops", "seconds"]


def leaderboard(records: list[dict[str, Any]], base_score: float, lm: bool = False,
                base_test_score: float | None = None) -> pd.DataFrame:
    """One row per candidate (and the reference), best first: trained candidates by
    final validation score, then the rest by surrogate. ``gain`` is on the validation
    split (what the best is chosen by), ``test_gain`` on the test split (reported only);
    ``final_accuracy``/``final_loss`` are test figures. ``compute_flops`` is screening +
    training in FLOPs (forward+backward = 3x forward)."""
    rows = []
    for r in records:
        final = r.get("final_score")
        test = r.get("final_test_score")
        examples = (r.get("screen_cost") or 0) + (r.get("train_cost") or 0)
        rows.append({
            "candidate": r["id"], "plan": r.get("plan_name", ""), "kind": r.get("kind", ""),
            "init": r.get("init", "") if r["id"] != "base" else "",
            "params": r.get("params"), "flops": r.get("flops"),
            "manifold_metric": r.get("manifold_metric"), "surrogate": r.get("surrogate"),
            "max_abs_output_diff": r.get("max_abs_output_diff"),
            "stage": r.get("stage", ""), "reason": r.get("reason", ""), "epochs": r.get("epochs"),
            "val_score": final, "test_score": test,
            "final_accuracy": r.get("final_accuracy"), "final_loss": r.get("final_loss"),
            "gain": (final - base_score) if final is not None else None,
            "test_gain": (test - base_test_score) if test is not None and base_test_score is not None else None,
            "compute_fb": examples,
            "compute_flops": training_flops(r["flops"], examples) if r.get("flops") is not None else None,
            "seconds": (r.get("screen_seconds") or 0) + (r.get("train_seconds") or 0),
            "_score": final if final is not None else -math.inf,
            "_order": STAGE_ORDER.get(r.get("stage", ""), 6) if r["id"] != "base" else 0,
        })
    df = pd.DataFrame(rows, columns=[*COLUMNS, "_score", "_order"])
    surrogate = df["surrogate"].astype(float).fillna(df["manifold_metric"].astype(float)).fillna(-math.inf)
    df = df.assign(_surrogate=surrogate).sort_values(["_order", "_score", "_surrogate"],
                                                     ascending=[True, False, False], kind="stable")
    return df.drop(columns=["_score", "_order", "_surrogate"]).reset_index(drop=True)


def _pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points not dominated in (low params, high accuracy), sorted by params."""
    front, best = [], -math.inf
    for p in sorted(points):
        if p[1] > best:
            front.append(p)
            best = p[1]
    return front


def _human(value: float) -> str:
    """A tick label people read at a glance: 7.5k, 20k, 1.2M."""
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= div:
            return f"{value / div:.3g}{suffix}"
    return f"{value:.3g}"


def _readable_log_ticks(ax: Any, low: float, high: float) -> None:
    """Labelled ticks on a log x axis for data in ``[low, high]``, however narrow the range:
    the 1-1.5-2-3-5-7 series of each decade where it gives three or more ticks, else four
    geometrically spaced values over the visible axis, rounded to two significant digits. Matplotlib's default
    labels only powers of ten, so a range inside one decade showed no number at all."""
    import matplotlib.ticker

    lo, hi = (low / 1.25, high * 1.25) if low > 0 else (1.0, 10.0)
    ax.set_xlim(lo, hi)
    ticks = [m * 10.0**e for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
             for m in (1, 1.5, 2, 3, 5, 7) if lo <= m * 10.0**e <= hi]
    if len(ticks) > 8:  # wide ranges: thin to the 1-2-5 series, then to powers of ten
        ticks = [t for t in ticks if round(t / 10.0 ** math.floor(math.log10(t)), 6) in (1, 2, 5)]
    if len(ticks) > 8:
        ticks = [t for t in ticks if round(t / 10.0 ** math.floor(math.log10(t)), 6) == 1]
    if len(ticks) < 3:  # a narrow range: four values spread over the visible axis
        a, b = math.log(lo * 1.08), math.log(hi / 1.08)
        ticks = sorted({float(f"{math.exp(a + i * (b - a) / 3):.2g}") for i in range(4)})
    ax.xaxis.set_major_locator(matplotlib.ticker.FixedLocator(ticks))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: _human(v)))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def figures(df: pd.DataFrame) -> dict[str, Any]:
    """The report's matplotlib figures, by file name (the caller saves and closes them)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trained = df[df["final_accuracy"].notna() & (df["candidate"] != "base")]
    figs = {}

    fig, ax = plt.subplots(figsize=(5.5, 4))
    scored = trained[trained["manifold_metric"].notna()]  # surrogate: none computes no metric
    for init, group in scored.groupby("init"):
        ax.scatter(group["manifold_metric"], group["final_accuracy"], label=init)
        for _, row in group.iterrows():
            ax.annotate(row["plan"], (row["manifold_metric"], row["final_accuracy"]), fontsize=7)
    ax.set_xlabel("manifold metric (before training)")
    ax.set_ylabel("final test accuracy")
    ax.set_title("surrogate vs. trained accuracy" if len(scored) or not len(trained) else "no surrogate computed")
    if len(scored):
        ax.legend()
    fig.tight_layout()
    figs["surrogate_vs_accuracy.png"] = fig

    fig, ax = plt.subplots(figsize=(5.5, 4))
    points = [(float(p), float(a)) for p, a in zip(trained["params"], trained["final_accuracy"], strict=True)]
    ax.scatter([p for p, _ in points], [a for _, a in points], label="trained candidates")
    base = df[df["candidate"] == "base"]
    if len(base) and base["final_accuracy"].notna().all():
        ax.axhline(float(base["final_accuracy"].iloc[0]), ls=":", c="gray", label="base, same budget")
    front = _pareto_front(points)
    if front:
        ax.plot([p for p, _ in front], [a for _, a in front], "r--", label="Pareto front")
    if points:
        ax.set_xscale("log")
        _readable_log_ticks(ax, min(p for p, _ in points), max(p for p, _ in points))
    ax.set_xlabel("parameters")
    ax.set_ylabel("final test accuracy")
    ax.set_title("accuracy vs. size")
    ax.legend()
    fig.tight_layout()
    figs["accuracy_vs_params.png"] = fig
    return figs


def plot(df: pd.DataFrame, out: Path) -> list[Path]:
    """Write the report's plots as PNG files into ``out``."""
    figs = figures(df)
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fig in figs.items():
        paths.append(out / name)
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


def write_report(out: str | Path, records: list[dict[str, Any]], reference: dict[str, Any] | None,
                 base_score: float, info: dict[str, Any]) -> dict[str, Any] | None:
    """Write leaderboard.csv/.md, plots/ and best/ into ``out``; return the best record
    (the best *validation* score; its test score is reported, never selected on)."""
    out = Path(out)
    all_records = records + ([reference] if reference else [])
    base_test_score = reference.get("final_test_score") if reference else info.get("base_test_score")
    df = leaderboard(all_records, base_score, base_test_score=base_test_score)
    budget = info.get("budget")
    if budget:  # a budgeted search: where each candidate came from, and the budget on every row
        by_id = {r["id"]: r for r in all_records}
        df["source"] = [by_id.get(c, {}).get("source", "") for c in df["candidate"]]
        df["bracket"] = [by_id.get(c, {}).get("bracket") for c in df["candidate"]]
        df["budget_flops"] = budget["budget_flops"]
        df["spent_flops"] = budget["spent_flops"]
    atomic_write(out / "leaderboard.csv", df.to_csv(index=False))
    maybe_inject("report", "-")  # between two files: a kill here must not leave a torn leaderboard
    shown = df.drop(columns=["reason", "budget_flops", "spent_flops"], errors="ignore").copy()
    for col in ("manifold_metric", "surrogate", "val_score", "test_score", "final_accuracy", "final_loss", "gain",
                "test_gain"):
        shown[col] = shown[col].map(lambda v: "" if v is None or pd.isna(v) else f"{v:.4f}")
    shown["max_abs_output_diff"] = shown["max_abs_output_diff"].map(
        lambda v: "" if v is None or pd.isna(v) else f"{v:.1e}")
    failures = df[df["reason"].astype(bool)][["candidate", "stage", "reason"]]
    named = sorted({r["surrogate_name"] for r in records if r.get("surrogate_name")})
    md = ["# Leaderboard", "", f"Base validation score (reference for gain; ranked by validation score, test "
          f"figures reported only): {base_score:.4f}", "",
          f"Surrogate (what promotion ranked by): {', '.join(named) or 'manifold'}", "",
          shown.to_markdown(index=False)]
    if budget:
        share = 100 * budget["spent_flops"] / budget["budget_flops"]
        md[4:4] = [f"Budget: {budget['budget_flops']:.4g} training FLOPs ({budget['budget_full_trainings']:.3f} full "
                   f"trainings of the largest allowed candidate); spent: {budget['spent_flops']:.4g} FLOPs "
                   f"({budget['spent_full_trainings']:.3f}, {share:.1f}% "
                   "of the budget: screening, every training epoch" +
                   (" and the reference run)" if budget.get("reference_flops") else "; no reference run)"), "",
                   "Surrogate check (Kendall tau of the surrogate against the validation score at each training "
                   "rung, over every candidate that reached it so far; n/a: fewer than two): " +
                   (", ".join(f"bracket {t['bracket']} rung {t['rung']} ({t['epochs']} ep, n={t['candidates']}): "
                              + ("n/a" if t["tau"] is None else f"{t['tau']:+.2f}") for t in budget["surrogate_tau"])
                    or "no training rung"), "",
                   "Proposal sources' final weights: " +
                   ", ".join(f"{k} {v:.2f}" for k, v in budget["weights"].items()),
                   ""]
    if len(failures):
        md += ["", "## Rejected and failed", "", failures.to_markdown(index=False)]
    atomic_write(out / "leaderboard.md", "\n".join(md) + "\n")
    plot(df, out / "plots")

    candidates = [r for r in records if r.get("final_score") is not None and r.get("stage") == "completed"]
    candidates = candidates or [r for r in records if r.get("final_score") is not None]
    if not candidates:
        return None
    best = max(candidates, key=lambda r: r["final_score"])
    target = out / "best"
    tmp = out / ".best.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(out / best["checkpoint"], tmp)  # relative to the results folder (absolute in old records)
    meta = json.loads((tmp / "meta.json").read_text())
    write_json(tmp / "meta.json", {**meta, "search": info, "gain": best["final_score"] - base_score,
                                   "test_gain": None if base_test_score is None or best.get("final_test_score") is None
                                   else best["final_test_score"] - base_test_score})
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return best


def rerender(out: str | Path) -> dict[str, Any] | None:
    """``growsearch report DIR``: re-render the outputs from the records alone."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"report: {out} is a file; allowed: a results folder")
    state = SearchState(out)
    records = state.records()
    if not (out / "config.yaml").exists() or not records:
        raise ConfigError(f"report: {out} holds no growsearch search results")
    reference = state.record("base")
    base_meta = read_json(out / "best" / "meta.json") if (out / "best" / "meta.json").exists() else {}
    if reference and "final_score" in reference:
        base_score = reference["final_score"]
    else:
        base_score = base_meta.get("search", {}).get("base_score", 0.0)
    return write_report(out, records, reference, base_score, base_meta.get("search", {}))
