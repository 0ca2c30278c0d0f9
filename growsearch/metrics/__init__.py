"""Surrogate scores of a grown candidate, computed before any full training.

* :mod:`~growsearch.metrics.manifold` -- the manifold metric (the surrogate).
* :mod:`~growsearch.metrics.proxies` -- zero-cost proxies and short training at equal cost.
* :mod:`~growsearch.metrics.cost` -- parameter count and measured FLOPs.

:func:`score_candidate` is the one function the ``score`` command, the predictor
benchmark and the search loop share: grow, check preservation, score.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from growsearch.data import Task
from growsearch.grow import DEFAULT_INIT, ExpansionPlan, GrowResult, grow, growth_mask
from growsearch.metrics.cost import cost_figures, flops_per_example
from growsearch.metrics.manifold import (
    ESTIMATORS,
    ManifoldConfig,
    ManifoldResult,
    manifold_metric,
    simplex_log_volume,
)
from growsearch.metrics.proxies import ZERO_COST, short_training, zero_cost_proxies
from growsearch.train import TrainRecipe

PROXY_PROBE = 128  # training examples the zero-cost proxies and the short-training baseline are judged on


def score_model(model: nn.Module, task: Task, manifold: ManifoldConfig | None = None, *,
                proxies: bool = False, short_recipe: TrainRecipe | None = None,
                variants: dict[str, Any] | None = None) -> dict[str, Any]:
    """Surrogate scores of ``model`` as it is (before training), as one flat dict; a masked
    growth as grown (mask at 0), the function it starts training from.

    Always: ``manifold_metric`` (+ its pieces under ``manifold``), ``params``, ``flops``,
    ``cost`` (forward+backward examples and seconds the metric spent), ``probe_sizes``.
    With ``proxies``: every zero-cost proxy on one probe of :data:`PROXY_PROBE` training
    examples; with ``short_recipe``: the short-training baseline at the metric's cost,
    judged on that same probe; with ``variants`` (a dict of data-size knobs such as
    ``probe_size``, possibly empty): every named estimator with its preset and those knobs
    (``manifold_<name>`` and ``manifold_<name>_cost``), on the manifold probe.
    """
    manifold = manifold or ManifoldConfig()
    # A masked growth is scored as grown: its mask at 0 through the parametrisations and the
    # masked norms (folding it at 0 changes the function where a norm spans widened units);
    # the manifold metric perturbs the underlying parameters.
    masked = growth_mask(model) is not None
    x, y = task.x_train, task.y_train
    result: ManifoldResult = manifold_metric(model, x, y, manifold)
    out: dict[str, Any] = {
        "manifold_metric": result.metric,
        "manifold_per_param": result.metric_per_param,
        "manifold": result.to_dict(),
        "cost": {"forward_backward": result.cost, "seconds": result.seconds},
        **cost_figures(model, task.x_train[:1]),
        "probe_sizes": {"manifold": min(manifold.probe_size, len(x))},
    }
    probe = task.probe(PROXY_PROBE, seed=manifold.seed)
    if proxies or short_recipe is not None:
        out["probe_sizes"]["proxies"] = len(probe[0])
    if variants is not None:
        for name in ESTIMATORS:  # each with its own preset plus the data-size knobs in ``variants``
            cfg = ManifoldConfig(**{**variants, "estimator": name, "seed": manifold.seed,
                                    "vectorize": manifold.vectorize})
            run = manifold_metric(model, x, y, cfg)
            out[f"manifold_{name}"] = run.metric
            out[f"manifold_{name}_cost"] = run.cost
    if proxies:
        out.update(zero_cost_proxies(model, *probe))
    if short_recipe is not None:
        if masked:  # trained as grown: the mask ramps over the short run's own share of its steps
            short_recipe = dataclasses.replace(short_recipe, mask_steps=None)
        out.update(short_training(model, task, result.cost, short_recipe, probe, seed=manifold.seed))
    return out


def grow_on_task(base: nn.Module, spec: dict[str, Any], task: Task, plan: ExpansionPlan,
                 init: str = DEFAULT_INIT, seed: int = 0) -> GrowResult:
    """Grow ``base``, measuring function preservation on 256 training examples of ``task``."""
    probe_x = task.probe(256, seed=seed)[0].to(next(base.parameters()).device)
    return grow(base, spec, plan, init=init, seed=seed, probe=probe_x)


def score_candidate(base: nn.Module, spec: dict[str, Any], task: Task, plan: ExpansionPlan,
                    init: str = DEFAULT_INIT, seed: int = 0, **kwargs: Any) -> tuple[GrowResult, dict[str, Any]]:
    """Grow ``base`` by ``plan`` and score the grown model; returns ``(grown, scores)``."""
    grown = grow_on_task(base, spec, task, plan, init, seed)
    report = grown.report()
    scores = score_model(grown.model, task, **kwargs)
    scores.update({k: report[k] for k in ("plan", "plan_name", "kind", "init", "params_before",
                                          "max_abs_output_diff")})
    return grown, scores


__all__ = ["ZERO_COST", "ManifoldConfig", "ManifoldResult", "cost_figures", "flops_per_example", "grow_on_task",
           "manifold_metric", "score_candidate", "score_model", "short_training", "simplex_log_volume",
           "zero_cost_proxies"]
