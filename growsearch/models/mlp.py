"""Multi-layer perceptron: any number of hidden layers with per-layer widths.

A hidden layer is *dense* (``act(norm(W x + b))``, sets the width of the stream) or
*residual* (``x + W_out act(norm(W_in x + b_in)) + b_out``, keeps the stream width and
has an inner width of its own). Depth growth inserts residual layers, because a
residual layer whose output weights are zero is the identity for every activation and
with or without LayerNorm (a dense identity layer is exact only for ReLU without norm).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from growsearch.errors import ConfigError
from growsearch.models.base import ACTIVATIONS, ModelConfig, UnitGroup, check_positive


@dataclass
class MLPConfig(ModelConfig):
    in_dim: int
    out_dim: int
    hidden: list[int]
    residual: list[bool] = field(default_factory=list)
    activation: str = "relu"
    layernorm: bool = False

    family = "mlp"

    def validate(self) -> None:
        check_positive(self, "in_dim", "out_dim", "hidden")
        if not self.residual:
            self.residual = [False] * len(self.hidden)
        if len(self.residual) != len(self.hidden):
            raise ConfigError(
                f"spec.residual: has {len(self.residual)} entries; allowed: one per hidden "
                f"layer ({len(self.hidden)})"
            )
        if self.activation not in ACTIVATIONS:
            raise ConfigError(
                f"spec.activation: got {self.activation!r}; allowed: {', '.join(ACTIVATIONS)}"
            )

    def build(self) -> MLP:
        return MLP(self)

    def num_layers(self) -> int:
        return len(self.hidden)

    def stream_width(self, upto: int) -> int:
        """Width of the stream entering hidden layer ``upto`` (or the head, at the end)."""
        width = self.in_dim
        for i in range(upto):
            if not self.residual[i]:
                width = self.hidden[i]
        return width

    def unit_groups(self) -> list[UnitGroup]:
        groups: list[UnitGroup] = []
        # The stream group currently being written, as a mutable record until closed.
        stream: dict | None = None

        def close_stream(consumer: tuple[str, int]) -> None:
            if stream is not None:
                stream["consumers"].append(consumer)
                groups.append(
                    UnitGroup(
                        name=stream["name"],
                        size=stream["size"],
                        producers=tuple(stream["producers"]),
                        consumers=tuple(stream["consumers"]),
                        norms=tuple(stream["norms"]),
                        normalized=self.layernorm,
                    )
                )

        norm = self.layernorm
        for i, width in enumerate(self.hidden):
            p = f"layers.{i}"
            if self.residual[i]:
                groups.append(
                    UnitGroup(
                        name=f"hidden.{i}",
                        size=width,
                        producers=((f"{p}.fc_in.weight", 0), (f"{p}.fc_in.bias", 0)),
                        consumers=((f"{p}.fc_out.weight", 1),),
                        norms=(f"{p}.norm.weight", f"{p}.norm.bias") if norm else (),
                        normalized=norm,
                    )
                )
                if stream is not None:  # a residual layer reads and writes the stream
                    stream["consumers"].append((f"{p}.fc_in.weight", 1))
                    stream["producers"] += [(f"{p}.fc_out.weight", 0), (f"{p}.fc_out.bias", 0)]
            else:
                close_stream((f"{p}.fc.weight", 1))
                stream = {
                    "name": f"hidden.{i}",
                    "size": width,
                    "producers": [(f"{p}.fc.weight", 0), (f"{p}.fc.bias", 0)],
                    "consumers": [],
                    "norms": [f"{p}.norm.weight", f"{p}.norm.bias"] if norm else [],
                }
        close_stream(("head.weight", 1))
        return sorted(groups, key=lambda g: int(g.name.split(".")[1]))

    def example_input(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(n, self.in_dim, generator=generator)

    def widened(self, targets: dict[str, int]) -> MLPConfig:
        hidden = [targets.get(f"hidden.{i}", w) for i, w in enumerate(self.hidden)]
        return MLPConfig(self.in_dim, self.out_dim, hidden, list(self.residual),
                         self.activation, self.layernorm)

    def deepened(self, positions: list[int]) -> tuple[MLPConfig, dict[str, str], list[str]]:
        hidden: list[int] = []
        residual: list[bool] = []
        rename: dict[str, str] = {}
        new: list[str] = []
        for i in range(len(self.hidden) + 1):
            for _ in range(positions.count(i)):  # new residual layers at the stream width here
                new.append(f"layers.{len(hidden)}")
                hidden.append(self.stream_width(i))
                residual.append(True)
            if i < len(self.hidden):
                rename[f"layers.{i}"] = f"layers.{len(hidden)}"
                hidden.append(self.hidden[i])
                residual.append(self.residual[i])
        cfg = MLPConfig(self.in_dim, self.out_dim, hidden, residual, self.activation, self.layernorm)
        return cfg, rename, new

    def identity_zeros(self, layer: str) -> list[str]:
        return [f"{layer}.fc_out.weight", f"{layer}.fc_out.bias"]


class DenseLayer(nn.Module):
    def __init__(self, d_in: int, d_out: int, cfg: MLPConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(d_in, d_out)
        self.norm = nn.LayerNorm(d_out) if cfg.layernorm else nn.Identity()
        self.act = ACTIVATIONS[cfg.activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.fc(x)))


class ResidualLayer(nn.Module):
    def __init__(self, d_stream: int, d_inner: int, cfg: MLPConfig) -> None:
        super().__init__()
        self.fc_in = nn.Linear(d_stream, d_inner)
        self.norm = nn.LayerNorm(d_inner) if cfg.layernorm else nn.Identity()
        self.act = ACTIVATIONS[cfg.activation]()
        self.fc_out = nn.Linear(d_inner, d_stream)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc_out(self.act(self.norm(self.fc_in(x))))


class MLP(nn.Module):
    def __init__(self, cfg: MLPConfig) -> None:
        super().__init__()
        self.config = cfg
        layers: list[nn.Module] = []
        for i, width in enumerate(cfg.hidden):
            d = cfg.stream_width(i)
            layers.append(ResidualLayer(d, width, cfg) if cfg.residual[i] else DenseLayer(d, width, cfg))
        self.layers = nn.ModuleList(layers)
        self.head = nn.Linear(cfg.stream_width(len(cfg.hidden)), cfg.out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for layer in self.layers:
            x = layer(x)
        return self.head(x)

