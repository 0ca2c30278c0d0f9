"""What every model family provides.

A family is one file: a config dataclass (the architecture spec, JSON round-trip) and a
plain ``nn.Module`` built from it. Besides building, a config describes its own
*unit groups* -- the sets of parameter slices that must grow together -- so that the
growth operators in :mod:`growsearch.grow` can stay family-agnostic.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
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
    """

    name: str
    size: int
    producers: tuple[tuple[str, int], ...]
    consumers: tuple[tuple[str, int], ...]
    norms: tuple[str, ...] = ()
    normalized: bool = False
    block: int = 1
    preserve: str = "split"


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
