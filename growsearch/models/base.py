"""What every model family provides.

A family is one file: a config dataclass (the architecture spec, JSON round-trip) and a
plain ``nn.Module`` built from it. Besides building, a config describes its own
*unit groups* -- the sets of parameter slices that must grow together -- so that the
growth operators in :mod:`growsearch.grow` can stay family-agnostic.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from growsearch._validate import from_dict
from growsearch.errors import ConfigError


@dataclass(frozen=True)
class UnitGroup:
    """Units (neurons, channels, heads, residual-stream dims) that are widened together.

    ``producers`` are ``(parameter, axis)`` pairs whose slices along ``axis`` *compute*
    the units (rows of the weight that outputs them, their bias); ``consumers`` are the
    pairs that *read* them (input columns of the next weight); ``norms`` are per-unit
    parameters and buffers along axis 0 (LayerNorm/BatchNorm affine and running stats).

    ``normalized`` marks groups spanned by a LayerNorm, whose statistics change when
    units are added unless every unit is replicated the same number of times.
    ``block`` is the number of contiguous elements per unit (``head_dim`` for heads).
    ``preserve`` says how the baseline ``split_positive`` init (the old Net2Net) treats new units:
    ``"split"`` duplicates units and splits their outgoing weights (Net2WiderNet);
    ``"zero_out"`` gives new units fresh incoming and zero outgoing weights.
    ``blocks`` overrides ``block`` for single parameters: a grouped-query attention unit is
    one key/value head (``head_dim`` rows of k and v) with the query heads it serves
    (``heads_per_kv * head_dim`` rows of q).
    """

    name: str
    size: int
    producers: tuple[tuple[str, int], ...]
    consumers: tuple[tuple[str, int], ...]
    norms: tuple[str, ...] = ()
    normalized: bool = False
    block: int = 1
    preserve: str = "split"
    blocks: tuple[tuple[str, int], ...] = ()

    def block_of(self, name: str) -> int:
        """Contiguous elements per unit in parameter ``name``."""
        return dict(self.blocks).get(name, self.block)


@dataclass
class ModelConfig:
    """Base class of the architecture specs. Subclasses are dataclasses."""

    family: ClassVar[str] = ""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the field for an impossible architecture."""

    def to_spec(self) -> dict[str, Any]:
        """The JSON architecture spec (``family`` plus every field)."""
        return {"family": self.family, **dataclasses.asdict(self)}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> ModelConfig:
        spec = dict(spec)
        family = spec.pop("family", cls.family)
        if family != cls.family:
            raise ConfigError(f"spec.family: got {family!r}; this loader expects {cls.family!r}")
        return from_dict(cls, spec, "spec")

    # -- what the growth operators need -------------------------------------------------
    def build(self) -> nn.Module:
        raise NotImplementedError

    def unit_groups(self) -> list[UnitGroup]:
        """Every growable group of this architecture, in a stable order."""
        raise NotImplementedError

    def num_layers(self) -> int:
        """Number of positions where depth growth can insert (layers, blocks or stages)."""
        raise NotImplementedError

    def example_input(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """A random input batch of the right shape and dtype (for probes and checks)."""
        raise NotImplementedError

    def widened(self, targets: dict[str, int]) -> ModelConfig:
        """This architecture with unit group ``name`` resized to ``targets[name]``."""
        raise NotImplementedError

    def deepened(self, positions: list[int]) -> tuple[ModelConfig, dict[str, str], list[str]]:
        """Insert one layer/block per position. Returns the new config, a map from old to
        new module prefixes for the layers that moved, and the prefixes of the new ones."""
        raise NotImplementedError

    def identity_zeros(self, layer: str) -> list[str]:
        """Parameters of an inserted layer that, set to zero, make it the identity."""
        raise NotImplementedError

    # -- optional hooks (defaults fit the built-in families) ------------------------------
    def fused(self) -> dict[str, tuple[int, int]]:
        """Parameters that hold several projections side by side, ``name -> (axis, parts)``
        (GPT-2's fused q/k/v). Growth splits them into ``name#0..parts-1``, widens the parts
        as separate parameters, and joins them again."""
        return {}

    def plan_fields(self) -> dict[str, tuple[str, int]]:
        """Explicit transformer plan fields, ``field -> (group-name prefix, units per group
        unit)``: ``n_heads=8`` on groups of 2 query heads per key/value head is 4 units."""
        return {}

    def coupled(self, wanted: dict[str, int]) -> dict[str, int]:
        """Adjust target sizes that an architecture ties together (GPT-2: heads = n_embd /
        head_dim); PlanError if they cannot agree. Default: no ties."""
        return wanted

    def dataset_ref(self, name: str) -> str:
        """The dataset reference a search records for user data ``name`` (a tokenised
        dataset names the tokenizer it needs). Default: ``name`` itself."""
        return name

    def write_weights(self, model: nn.Module, directory: Path) -> None:
        """Write ``model``'s weights into a checkpoint directory (default: model.safetensors)."""
        from growsearch.checkpoint import save_state

        save_state({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                   directory / "model.safetensors")

    def state_from_file(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The model's state dict from the tensors of its weights file (default: as is)."""
        return state


def check_positive(cfg: Any, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        values = value if isinstance(value, list) else [value]
        for i, v in enumerate(values):
            if v is not None and v <= 0:
                where = f"spec.{name}" + (f"[{i}]" if isinstance(value, list) else "")
                raise ConfigError(f"{where}: got {v}; allowed: a positive integer")


ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
}


def renumbered_layers(prefix: str, old: int, positions: list[int]) -> tuple[int, dict[str, str], list[str]]:
    """``old`` numbered layers ``prefix.0 .. prefix.{old-1}`` with one new layer inserted
    before layer ``i`` for each ``i`` in ``positions`` (``old``: after the last):
    ``(layers now, {old prefix: new prefix} for the layers that moved, new layers' prefixes)``
    -- the bookkeeping every family with a stack of numbered blocks shares."""
    rename: dict[str, str] = {}
    new: list[str] = []
    n = 0
    for i in range(old + 1):
        for _ in range(positions.count(i)):
            new.append(f"{prefix}.{n}")
            n += 1
        if i < old:
            rename[f"{prefix}.{i}"] = f"{prefix}.{n}"
            n += 1
    return n, rename, new
