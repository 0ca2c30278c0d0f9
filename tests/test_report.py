"""The report's plots carry readable numbers on every axis, however narrow the data."""

import math

import matplotlib.pyplot as plt
import pytest

from growsearch.report import figures, leaderboard


def records(params):
    rows = [{"id": f"c{i:04d}", "plan_name": f"p{i}", "init": "net2net", "params": p, "stage": "completed",
             "manifold_metric": -1.0 + 0.1 * i, "final_accuracy": 0.5 + 0.01 * i, "final_score": 0.5 + 0.01 * i}
            for i, p in enumerate(params)]
    return [*rows, {"id": "base", "plan_name": "base", "stage": "completed", "final_accuracy": 0.5,
                    "final_score": 0.5}]


def shown_labels(fig, axis):
    """The tick labels as rendered: non-empty and inside the axis limits."""
    fig.canvas.draw()
    ax = fig.axes[0]
    lo, hi = sorted(ax.get_xlim() if axis == "x" else ax.get_ylim())
    ticks = ax.get_xticklabels() if axis == "x" else ax.get_yticklabels()
    labels = [t.get_text() for t in ticks if t.get_visible() and t.get_text()
              and lo <= (t.get_position()[0] if axis == "x" else t.get_position()[1]) <= hi]
    return labels


def value(label):
    label = label.replace("\u2212", "-")
    scale = {"k": 1e3, "M": 1e6, "G": 1e9}.get(label[-1], 1)
    return float(label[:-1] if scale != 1 else label) * scale


@pytest.mark.parametrize("params", [
    [7690, 16010, 38410],          # the demo: inside one decade and a half (no label before)
    [11000, 13000, 19000],         # inside one decade, no 1-2-5 value in range
    [5000, 5100],                  # nearly equal
    [2_000, 90_000, 4_000_000],    # several decades
    [24_000],                      # one trained candidate
])
def test_every_plot_axis_has_readable_numbers(params):
    df = leaderboard(records(params), 0.5)
    for name in ("surrogate_vs_accuracy.png", "accuracy_vs_params.png"):
        for axis in ("x", "y"):
            figs = figures(df)
            labels = shown_labels(figs[name], axis)
            plt.close("all")
            assert len(labels) >= 2, (name, axis, labels)
            assert len(set(labels)) == len(labels), (name, axis, labels)  # no two ticks read the same
    xs = [value(t) for t in shown_labels(figures(df)["accuracy_vs_params.png"], "x")]
    assert xs == sorted(xs) and all(math.isfinite(x) and x > 0 for x in xs)
    plt.close("all")
    # the ticks span the data (to within one tick step): a reader can place every model
    step = xs[1] / xs[0]
    assert xs[0] <= min(params) * step and xs[-1] >= max(params) / step


def test_report_figures_for_an_empty_board():
    figs = figures(leaderboard(records([])[-1:], 0.5))
    assert set(figs) == {"surrogate_vs_accuracy.png", "accuracy_vs_params.png"}
    for fig in figs.values():
        shown_labels(fig, "x")
    plt.close("all")
