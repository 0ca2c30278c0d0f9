"""Do a grown model's new units stay copies? The symmetry probe.

Function-preserving growth by duplication starts every new unit as a copy of an old one.
If the copies receive proportional gradients (positive shares of the outgoing weights)
AdamW keeps them identical, and the added width is wasted. :func:`symmetry_probe`
measures, for a trained grown model:

* ``symmetric_fraction``: the fraction of new units whose incoming weights still have a
  cosine similarity above ``threshold`` (0.999) with some other unit of their group;
* ``rank_added``: how much the new units add to the effective rank (exp of the entropy
  of the normalised singular values) of the group's activations on a probe batch:
  ``erank(all units) - erank(old units)``; copies add (almost) nothing.

It works on the unit groups of any family (the widened groups ``grow`` reports).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from growsearch.models import UnitGroup

SYMMETRY_THRESHOLD = 0.999


def _tensor(model: nn.Module, name: str) -> torch.Tensor:
    """A parameter or buffer by its dotted name (the effective one, if parametrised)."""
    path, _, attr = name.rpartition(".")
    return getattr(model.get_submodule(path) if path else model, attr)


def _incoming(model: nn.Module, group: UnitGroup) -> torch.Tensor:
    """One row of incoming weights per unit (its producer slices, concatenated)."""
    rows = []
    for name, axis in group.producers:
        t = _tensor(model, name).detach().double().movedim(axis, 0)
        rows.append(t.reshape(group.size, -1))
    return torch.cat(rows, dim=1)


def effective_rank(a: torch.Tensor) -> float:
    """exp(entropy) of the normalised singular values of ``a`` (samples x features), centred."""
    a = a.double() - a.double().mean(0, keepdim=True)
    s = torch.linalg.svdvals(a)
    if s.sum() <= 0:
        return 0.0
    p = s / s.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def _activations(model: nn.Module, group: UnitGroup, x: torch.Tensor) -> torch.Tensor | None:
    """The group's activations (samples x units*block): the input of its first consumer
    that is a Linear or a convolution; None when there is none."""
    for name, axis in group.consumers:
        module = model.get_submodule(name.rpartition(".")[0])
        if axis != 1 or not isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
            continue
        seen: list[torch.Tensor] = []
        handle = module.register_forward_pre_hook(lambda _m, args, seen=seen: seen.append(args[0].detach()))
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                model(x)
        finally:
            handle.remove()
            model.train(was_training)
        a = seen[0]
        a = a.movedim(1, -1) if isinstance(module, nn.modules.conv._ConvNd) else a
        return a.reshape(-1, a.shape[-1])
    return None


def symmetry_probe(model: nn.Module, widened: list[tuple[UnitGroup, int]], x: torch.Tensor,
                   threshold: float = SYMMETRY_THRESHOLD) -> dict[str, Any]:
    """Symmetry of the new units of ``widened`` groups (as ``GrowResult.widened``) in ``model``.

    Returns ``symmetric_fraction`` (None when no group was widened), ``new_units``,
    ``rank_added`` (summed over groups) and per-group figures.
    """
    groups, symmetric, total, rank_added = {}, 0, 0, 0.0
    for group, old in widened:
        w = _incoming(model, group)
        w = w / w.norm(dim=1, keepdim=True).clamp_min(1e-30)
        cos = w @ w.T
        cos.fill_diagonal_(-1.0)
        near = (cos[old:].max(dim=1).values > threshold).sum().item()
        entry: dict[str, Any] = {"old": old, "new": group.size, "symmetric": int(near)}
        acts = _activations(model, group, x)
        if acts is not None:
            cut = old * group.block
            entry["erank_old"] = effective_rank(acts[:, :cut])
            entry["erank_all"] = effective_rank(acts)
            entry["rank_added"] = entry["erank_all"] - entry["erank_old"]
            rank_added += entry["rank_added"]
        groups[group.name] = entry
        symmetric += int(near)
        total += group.size - old
    return {"symmetric_fraction": symmetric / total if total else None, "new_units": total,
            "rank_added": rank_added, "groups": groups}
