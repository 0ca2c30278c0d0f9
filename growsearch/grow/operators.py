"""The growth operators: widen unit groups, insert layers, and check preservation.

``grow`` resolves a plan into unit-group sizes and insertion positions, lets the init
(:mod:`growsearch.grow.inits`) fill the new units and layers, builds the grown model
and measures how far its function moved on a probe batch. For ``masked`` it attaches
the :class:`~growsearch.grow.mask.GrowthMask` the training loop ramps.

Exactness: duplication keeps a LayerNorm's mean and variance only when every unit is
replicated equally often, i.e. at integer multiples of the width. Other sizes replicate
a random subset once more; the function then changes slightly and ``grow`` reports the
measured ``max_abs_output_diff`` (README, "Growth, exactly"). ``masked`` weights the
LayerNorm statistics instead and is exact at every width.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from growsearch.errors import PlanError
from growsearch.grow.inits import DEFAULT_INIT, INITS, PRESERVING_INITS, widen_group
from growsearch.grow.mask import GrowthMask, attach, is_norm
from growsearch.grow.plan import ExpansionPlan, resolve
from growsearch.models import ModelConfig, UnitGroup, config_from_spec, count_params
from growsearch.models.memory import check_memory


@dataclass
class GrowResult:
    """A grown model, its spec, and what growth did to it."""

    model: nn.Module
    spec: dict[str, Any]
    plan: ExpansionPlan
    init: str
    params_before: int
    params_after: int
    max_abs_output_diff: float  # float64 evaluation of the grown float32 weights
    max_abs_output_diff_float32: float  # the same, evaluated in float32 as the model runs
    seconds: float
    notes: list[str] = field(default_factory=list)
    # every widened group, named as in the grown model (size = new size), with its old size
    widened: list[tuple[UnitGroup, int]] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        return {
            "plan": self.plan.to_dict(),
            "plan_name": self.plan.describe(),
            "kind": self.plan.kind,
            "init": self.init,
            "params_before": self.params_before,
            "params_after": self.params_after,
            "max_abs_output_diff": self.max_abs_output_diff,
            "max_abs_output_diff_float32": self.max_abs_output_diff_float32,
            "function_preserving": self.init in PRESERVING_INITS,
            "spec": self.spec,
            "seconds": self.seconds,
            "notes": self.notes,
        }


def _fresh_state(cfg: ModelConfig, seed: int) -> dict[str, torch.Tensor]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cfg.build().state_dict()


def _split_fused(state: dict[str, torch.Tensor], fused: dict[str, tuple[int, int]]) -> None:
    """``name`` -> ``name#0..parts-1`` for parameters that hold several projections."""
    for name, (axis, parts) in fused.items():
        if name in state:
            for i, part in enumerate(state.pop(name).chunk(parts, dim=axis)):
                state[f"{name}#{i}"] = part.clone()


def _join_fused(state: dict[str, torch.Tensor], fused: dict[str, tuple[int, int]]) -> None:
    for name, (axis, parts) in fused.items():
        if f"{name}#0" in state:
            state[name] = torch.cat([state.pop(f"{name}#{i}") for i in range(parts)], dim=axis)


def _rename(key: str, rename: dict[str, str]) -> str:
    for old, new in rename.items():
        if key.startswith(old + "."):
            return new + key[len(old):]
    return key


def output_diff(a: nn.Module, b: nn.Module, x: torch.Tensor, dtype: torch.dtype | None = None) -> float:
    """Max absolute difference of two models' outputs on ``x``, both in eval mode.

    With ``dtype=torch.float64`` both models are evaluated on float64 copies of their
    (unchanged) weights: this isolates what the grown *weights* compute from the float32
    rounding of the forward pass, whose summation order differs between a layer and its
    widened copy (a few ulps of the logits, i.e. ~1e-6 for logits of size 20).
    """
    if dtype is not None:
        a, b = copy.deepcopy(a).to(dtype), copy.deepcopy(b).to(dtype)
        x = x.to(dtype) if x.is_floating_point() else x
    modes = a.training, b.training
    a.eval()
    b.eval()
    with torch.no_grad():
        diff = (a(x).double() - b(x).double()).abs().max().item()
    a.train(modes[0])
    b.train(modes[1])
    return diff


def _renamed(group: UnitGroup, rename: dict[str, str], size: int) -> UnitGroup:
    """``group`` with its parameter names after depth growth moved layers, at ``size``."""
    def pairs(items: tuple[tuple[str, int], ...]) -> tuple[tuple[str, int], ...]:
        return tuple((_rename(name, rename), axis) for name, axis in items)

    return dataclasses.replace(group, size=size, producers=pairs(group.producers),
                               consumers=pairs(group.consumers),
                               norms=tuple(_rename(n, rename) for n in group.norms))


def _install_mask(model: nn.Module, widened: list[tuple[UnitGroup, int]], new_layers: list[str],
                  cfg: ModelConfig) -> GrowthMask:
    mask = GrowthMask(model)
    for group, old in widened:
        if group.normalized:  # norms first: a norm can also consume (a tied head's final norm)
            norms = [*group.norms, *(name for name, _ in group.consumers if is_norm(model, name))]
            for name in norms:
                mask.mask_norm(name, old * group.block)
        # the parts of a fused parameter are masked along a shared axis: mask it once
        consumers = dict.fromkeys((name.split("#")[0], axis, group.block_of(name)) for name, axis in group.consumers)
        for name, axis, block in consumers:
            mask.mask_param(name, axis, old * block)
    for layer in new_layers:
        for name in cfg.identity_zeros(layer):
            mask.mask_param(name, 0, 0)
    attach(model, mask)
    return mask


def grow(model: nn.Module, spec: dict[str, Any] | ModelConfig, plan: ExpansionPlan,
         init: str = DEFAULT_INIT, seed: int = 0, probe: torch.Tensor | None = None) -> GrowResult:
    """Grow ``model`` (built from ``spec``) by ``plan`` with ``init``; return the new model.

    The input model is not modified. ``probe`` is the batch on which the function
    preservation is measured; by default 64 random inputs of the right shape. With
    ``init="masked"`` the grown model carries its mask (``growsearch.grow.mask``) until
    the training loop folds it.
    """
    if init not in INITS:
        raise PlanError(f"init: got {init!r}; allowed: {', '.join(INITS)}")
    start = time.perf_counter()
    cfg = config_from_spec(spec)
    resolved = resolve(cfg, plan)
    # the memory guard, on the meta device, before any weight is allocated
    wide_cfg = cfg.widened(resolved.targets) if resolved.targets else cfg
    check_memory(wide_cfg.deepened(resolved.positions)[0] if resolved.positions else wide_cfg, "plan", PlanError)
    gen = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    # width: expand every group that changes, in the config's stable order
    widened: list[tuple[UnitGroup, int]] = []
    if resolved.targets:
        fresh = _fresh_state(wide_cfg, seed)
        fused = cfg.fused()
        _split_fused(state, fused)
        _split_fused(fresh, fused)
        for group in cfg.unit_groups():
            if group.name in resolved.targets:
                widen_group(state, fresh, group, resolved.targets[group.name], init, gen)
                widened.append((group, group.size))
        _join_fused(state, fused)

    # depth: insert layers that are the identity (zero output), masked, or fresh (random)
    new_cfg, rename, new_layers = wide_cfg, {}, []
    if resolved.positions:
        new_cfg, rename, new_layers = wide_cfg.deepened(resolved.positions)
        fresh = _fresh_state(new_cfg, seed + 1)
        state = {_rename(k, rename): v for k, v in state.items()}
        for key, value in fresh.items():
            if any(key.startswith(layer + ".") for layer in new_layers):
                state[key] = value.to(device)
        if init in PRESERVING_INITS and init != "masked":
            for layer in new_layers:
                for name in new_cfg.identity_zeros(layer):
                    state[name].zero_()
    widened = [(_renamed(g, rename, resolved.targets[g.name]), old) for g, old in widened]

    grown = new_cfg.build().to(device)
    grown.load_state_dict(state, strict=True)
    grown.train(model.training)
    if init == "masked":
        _install_mask(grown, widened, new_layers, new_cfg)

    if probe is None:
        probe = cfg.example_input(64, torch.Generator().manual_seed(seed))
    probe = probe.to(device)
    diff = output_diff(model, grown, probe, dtype=torch.float64)
    notes = []
    if init in PRESERVING_INITS and diff > 1e-5:
        notes.append("a LayerNorm spans a group grown by a non-integer multiple; "
                     "the function is preserved only approximately")
    return GrowResult(
        model=grown, spec=new_cfg.to_spec(), plan=copy.deepcopy(plan), init=init,
        params_before=count_params(model), params_after=count_params(grown),
        max_abs_output_diff=diff, max_abs_output_diff_float32=output_diff(model, grown, probe),
        seconds=time.perf_counter() - start, notes=notes, widened=widened,
    )
