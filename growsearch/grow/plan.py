"""ExpansionPlan: how to grow a model -- wider, deeper, or both.

A plan is family-agnostic in its common knobs (``width`` multiplier, ``depth``) and has
explicit per-family targets where a multiplier is too coarse (``widths`` per MLP layer or
CNN stage; ``d_model``, ``n_heads``, ``mlp_hidden`` for transformers). Plans round-trip
through YAML/JSON dicts, and :func:`resolve` turns a plan into concrete unit-group sizes
and insertion positions for one architecture, refusing what cannot be applied.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from growsearch._validate import from_dict
from growsearch.errors import PlanError
from growsearch.models import ModelConfig
from growsearch.models.memory import MAX_LAYERS, MAX_UNITS


@dataclass
class ExpansionPlan:
    """What to add to a model. Defaults describe the identity (no growth).

    ``width``: multiplier on every hidden width (MLP hidden layers, CNN stage channels,
    transformer d_model, heads and MLP hidden size), rounded to the nearest unit.
    ``widths``: explicit target widths, one per MLP hidden layer or CNN stage.
    ``depth``: number of layers (MLP), blocks (transformer) or residual blocks (CNN) to
    add, spread evenly unless ``insert_at`` gives positions: for MLP and transformer the
    index in the base model's layer list before which the new layer goes (0..n), for CNN
    the stage that gets a block at its end (0..stages-1).
    """

    width: float = 1.0
    widths: list[int] | None = None
    depth: int = 0
    insert_at: list[int] | None = None
    d_model: int | None = None
    n_heads: int | None = None
    mlp_hidden: int | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "plan") -> ExpansionPlan:
        return from_dict(cls, data, where)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @property
    def kind(self) -> str:
        """``width``, ``depth``, ``mixed`` or ``identity``."""
        wider = self.width != 1.0 or any(
            v is not None for v in (self.widths, self.d_model, self.n_heads, self.mlp_hidden))
        deeper = self.depth > 0 or bool(self.insert_at)
        return {(True, True): "mixed", (True, False): "width",
                (False, True): "depth", (False, False): "identity"}[(wider, deeper)]

    def describe(self) -> str:
        """A short human-readable name, e.g. ``w1.5+d2`` or ``widths=[96,64]``."""
        parts = []
        if self.width != 1.0:
            parts.append(f"w{self.width:g}")
        for name in ("widths", "d_model", "n_heads", "mlp_hidden", "insert_at"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{name}={value}".replace(" ", ""))
        if self.depth and self.insert_at is None:
            parts.append(f"d{self.depth}")
        return "+".join(parts) or "identity"


@dataclass
class ResolvedPlan:
    """A plan made concrete for one architecture."""

    targets: dict[str, int]  # unit-group name -> new size (only groups that change)
    positions: list[int]  # depth insertion positions


def _spread(depth: int, n: int, stagewise: bool) -> list[int]:
    if stagewise:  # stage indices, centred in equal shares of the stages
        return [min(n - 1, int((i + 0.5) * n / depth)) for i in range(depth)]
    # half-way rounds up (towards the output): Python's round() would send the one layer
    # added to a 1-layer MLP (position 0.5) to the input side, before the hidden layer
    return [max(min(math.floor((i + 1) * n / (depth + 1) + 0.5), n), 0) for i in range(depth)]


def resolve(cfg: ModelConfig, plan: ExpansionPlan) -> ResolvedPlan:
    """Concrete group sizes and positions for ``plan`` on ``cfg``; PlanError if impossible."""
    family = cfg.family
    stagewise = getattr(cfg, "stagewise", family == "cnn")  # depth positions are stage indices (cnn, ResNets)
    if plan.width < 1.0:
        raise PlanError(f"plan.width: got {plan.width:g}; allowed: >= 1 (growth can only widen)")
    if not 0 <= plan.depth <= MAX_LAYERS:
        raise PlanError(f"plan.depth: got {plan.depth}; allowed: 0..{MAX_LAYERS}")
    if plan.insert_at is not None and len(plan.insert_at) > MAX_LAYERS:
        raise PlanError(f"plan.insert_at: {len(plan.insert_at)} positions; allowed: at most {MAX_LAYERS}")
    fields = cfg.plan_fields()
    for name in ("d_model", "n_heads", "mlp_hidden"):
        if getattr(plan, name) is not None and name not in fields:
            raise PlanError(f"plan.{name}: applies to the gpt and hf families only; this model is {family}")
    if plan.widths is not None and fields:
        raise PlanError(f"plan.widths: applies to mlp and cnn; for {family} use d_model, n_heads, mlp_hidden")

    groups = {g.name: g.size for g in cfg.unit_groups()}
    if family == "gpt":  # head count and MLP size are in the spec even with no block yet
        groups.setdefault("heads.0", cfg.n_heads)
        groups.setdefault("mlp.0", cfg.mlp_hidden)
    wanted = {name: round(size * plan.width) for name, size in groups.items()}
    explicit: dict[str, tuple[str, int]] = {}  # group -> (plan field, value) for error messages
    if plan.widths is not None:
        layers = cfg.num_layers()
        if len(plan.widths) != layers:
            unit = "hidden layer" if family == "mlp" else "stage"
            raise PlanError(f"plan.widths: has {len(plan.widths)} entries; "
                            f"allowed: one per {unit} ({layers})")
        key = "hidden" if family == "mlp" else "stage"
        for i, w in enumerate(plan.widths):
            explicit[f"{key}.{i}"] = (f"plan.widths[{i}]", w)
    for field, (prefix, per_unit) in fields.items():
        value = getattr(plan, field)
        if value is not None:
            if value % per_unit:
                raise PlanError(f"plan.{field}: got {value}; allowed: a multiple of {per_unit} "
                                "(query heads grow in whole key/value groups)")
            explicit.update({g: (f"plan.{field}", value // per_unit) for g in groups if g.startswith(prefix)})
    for group, (field, value) in explicit.items():
        if value < groups[group]:
            raise PlanError(f"{field}: got {value}, smaller than the current {groups[group]}; "
                            f"allowed: >= {groups[group]} (growth can only widen)")
        wanted[group] = value
    if family == "cnn":  # a basic block's inner width follows its stage
        for group in groups:
            if group.startswith("inner."):
                wanted[group] = wanted["stage." + group.split(".")[1]]
    wanted = cfg.coupled(wanted)
    targets = {g: w for g, w in wanted.items() if w != groups[g]}
    for group, size in targets.items():
        if size > MAX_UNITS:
            field = explicit.get(group, ("plan.width", plan.width))[0]
            raise PlanError(f"{field}: makes {group} {size:.3g} units wide; allowed: at most {MAX_UNITS} units")

    n = cfg.num_layers()
    if plan.insert_at is not None:
        if plan.depth not in (0, len(plan.insert_at)):
            raise PlanError(f"plan.depth: got {plan.depth} with {len(plan.insert_at)} insert_at "
                            "positions; allowed: equal, or leave depth out")
        hi = n - 1 if stagewise else n
        for i, p in enumerate(plan.insert_at):
            if not 0 <= p <= hi:
                what = "stage index" if stagewise else "layer position"
                raise PlanError(f"plan.insert_at[{i}]: got {p}; allowed: a {what} in 0..{hi}")
        positions = list(plan.insert_at)
    else:
        if plan.depth and stagewise and n == 0:
            raise PlanError("plan.depth: this CNN has no stage to add blocks to")
        positions = _spread(plan.depth, n, stagewise) if plan.depth else []
    return ResolvedPlan(targets=targets, positions=sorted(positions))
