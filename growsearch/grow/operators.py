"""The growth operators: widen unit groups, insert layers, and check preservation.

Init methods (``INITS``):

* ``net2net`` (default, function-preserving). Width: Net2WiderNet unit duplication --
  a new unit copies the incoming weights of an existing unit and the outgoing weights of
  every copy are split with *unequal* random shares that sum to one (as in LEMON), so the
  copies are not symmetric and can diverge in training. BatchNorm/LayerNorm parameters
  and running statistics are copied with their unit. Groups whose family asks for it
  (transformer heads and MLP units) instead get fresh incoming and zero outgoing weights.
  Depth: inserted residual layers/blocks whose branch outputs zero.
* ``zero`` (function-preserving). New units: fresh incoming, zero outgoing weights.
  Inserted layers as in ``net2net``. For groups spanned by a LayerNorm the new units
  would change the norm's statistics, so there ``zero`` duplicates like ``net2net``.
* ``random``. New units and inserted layers freshly initialised; not preserving.

Exactness: duplication keeps a LayerNorm's mean and variance only when every unit is
replicated equally often, i.e. at integer multiples of the width. Other sizes replicate
a random subset once more; the function then changes slightly and ``grow`` reports the
measured ``max_abs_output_diff`` (README, "Growth, exactly").
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from growsearch.errors import PlanError
from growsearch.grow.plan import ExpansionPlan, resolve
from growsearch.models import ModelConfig, UnitGroup, config_from_spec, count_params

INITS = ("net2net", "zero", "random")
PRESERVING_INITS = ("net2net", "zero")


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


def _unit_map(n: int, new_n: int, gen: torch.Generator) -> torch.Tensor:
    """Old unit behind every new unit: the first ``n`` are themselves; whole multiples
    replicate every unit equally (keeps LayerNorm statistics); the rest are a random subset."""
    reps, rest = divmod(new_n, n)
    extra = torch.randperm(n, generator=gen)[:rest]
    return torch.cat([torch.arange(n).repeat(reps), extra])


def _split_shares(units: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    """Unequal shares of each old unit's outgoing weights among its copies; they sum to 1."""
    raw = 0.5 + torch.rand(len(units), generator=gen, dtype=torch.float64)
    total = torch.zeros(n, dtype=torch.float64).index_add_(0, units, raw)
    return raw / total[units]


def _fresh_slice(fresh: torch.Tensor, like: torch.Tensor, axis: int, start: int, stop: int) -> torch.Tensor:
    index = [slice(0, s) for s in like.shape]
    index[axis] = slice(start, stop)
    return fresh[tuple(index)].to(like.dtype).clone()


def _widen_group(state: dict[str, torch.Tensor], fresh: dict[str, torch.Tensor], group: UnitGroup,
                 new_size: int, mode: str, gen: torch.Generator) -> None:
    n = group.size
    units = _unit_map(n, new_size, gen)
    shares = _split_shares(units, n, gen)

    def grow(name: str, axis: int, role: str) -> None:
        t, b = state[name], group.block_of(name)
        elements = (units[:, None] * b + torch.arange(b)).flatten()
        element_shares = shares.repeat_interleave(b)
        if mode == "split":
            out = t.index_select(axis, elements.to(t.device))
            if role == "consumer":
                shape = [1] * t.dim()
                shape[axis] = -1
                out = (out.double() * element_shares.to(t.device).view(shape)).to(t.dtype)
        else:
            new = _fresh_slice(fresh[name], t, axis, n * b, new_size * b).to(t.device)
            if role == "consumer" and mode == "zero_out":
                new.zero_()
            out = torch.cat([t, new], dim=axis)
        state[name] = out

    for name, axis in group.producers:
        grow(name, axis, "producer")
    for name in group.norms:
        grow(name, 0, "norm")
    for name, axis in group.consumers:
        grow(name, axis, "consumer")


def _mode(init: str, group: UnitGroup) -> str:
    if init == "random":
        return "random"
    if init == "zero":
        return "split" if group.normalized else "zero_out"
    return group.preserve


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


def grow(model: nn.Module, spec: dict[str, Any] | ModelConfig, plan: ExpansionPlan,
         init: str = "net2net", seed: int = 0, probe: torch.Tensor | None = None) -> GrowResult:
    """Grow ``model`` (built from ``spec``) by ``plan`` with ``init``; return the new model.

    The input model is not modified. ``probe`` is the batch on which the function
    preservation is measured; by default 64 random inputs of the right shape.
    """
    if init not in INITS:
        raise PlanError(f"init: got {init!r}; allowed: {', '.join(INITS)}")
    start = time.perf_counter()
    cfg = config_from_spec(spec)
    resolved = resolve(cfg, plan)
    gen = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    # width: expand every group that changes, in the config's stable order
    wide_cfg = cfg.widened(resolved.targets) if resolved.targets else cfg
    if resolved.targets:
        fresh = _fresh_state(wide_cfg, seed)
        fused = cfg.fused()
        _split_fused(state, fused)
        _split_fused(fresh, fused)
        for group in cfg.unit_groups():
            if group.name in resolved.targets:
                _widen_group(state, fresh, group, resolved.targets[group.name], _mode(init, group), gen)
        _join_fused(state, fused)

    # depth: insert layers that are the identity (or fresh, for init=random)
    new_cfg = wide_cfg
    if resolved.positions:
        new_cfg, rename, new_layers = wide_cfg.deepened(resolved.positions)
        fresh = _fresh_state(new_cfg, seed + 1)
        state = {_rename(k, rename): v for k, v in state.items()}
        for key, value in fresh.items():
            if any(key.startswith(layer + ".") for layer in new_layers):
                state[key] = value.to(device)
        if init in PRESERVING_INITS:
            for layer in new_layers:
                for name in new_cfg.identity_zeros(layer):
                    state[name].zero_()

    grown = new_cfg.build().to(device)
    grown.load_state_dict(state, strict=True)
    grown.train(model.training)

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
        seconds=time.perf_counter() - start, notes=notes,
    )
