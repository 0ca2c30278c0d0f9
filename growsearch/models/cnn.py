"""ResNet-style residual CNN for 1-D signals (MNIST-1D) and 2-D images (digits, CIFAR-like).

stem (conv-BN-ReLU) -> stages of basic blocks -> global average pool -> linear head.
The first block of every stage after the first halves the resolution and changes the
channel count through a 1x1 conv-BN shortcut; all other shortcuts are the identity.
A basic block is ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from growsearch.errors import ConfigError
from growsearch.models.base import ModelConfig, UnitGroup, check_positive


@dataclass
class CNNConfig(ModelConfig):
    in_channels: int
    num_classes: int
    channels: list[int]
    blocks: list[int]
    dims: int = 1
    length: int = 40
    kernel_size: int = 3

    family = "cnn"

    def validate(self) -> None:
        check_positive(self, "in_channels", "num_classes", "channels", "length")
        if self.dims not in (1, 2):
            raise ConfigError(f"spec.dims: got {self.dims}; allowed: 1 or 2")
        if len(self.blocks) != len(self.channels) or not self.channels:
            raise ConfigError(
                f"spec.blocks: has {len(self.blocks)} entries; allowed: one per stage "
                f"({len(self.channels)} stages in spec.channels)"
            )
        if any(b < 0 for b in self.blocks) or any(b < 1 for b in self.blocks[1:]):
            raise ConfigError(
                f"spec.blocks: got {self.blocks}; allowed: >= 0 for stage 0, >= 1 for later stages"
            )
        if self.kernel_size % 2 != 1:
            raise ConfigError(f"spec.kernel_size: got {self.kernel_size}; allowed: an odd integer")

    def build(self) -> ResNet:
        return ResNet(self)

    def num_layers(self) -> int:
        return len(self.channels)

    def unit_groups(self) -> list[UnitGroup]:
        def bn(prefix: str) -> tuple[str, ...]:
            return tuple(f"{prefix}.{k}" for k in ("weight", "bias", "running_mean", "running_var"))

        groups = []
        for s, width in enumerate(self.channels):
            if s == 0:
                producers, norms = [("stem.conv.weight", 0)], list(bn("stem.bn"))
            else:
                producers = [(f"stages.{s}.0.shortcut.conv.weight", 0)]
                norms = list(bn(f"stages.{s}.0.shortcut.bn"))
            consumers = []
            for b in range(self.blocks[s]):
                p = f"stages.{s}.{b}"
                producers.append((f"{p}.conv2.weight", 0))
                norms += bn(f"{p}.bn2")
                if b > 0 or s == 0:
                    consumers.append((f"{p}.conv1.weight", 1))
                groups.append(
                    UnitGroup(
                        name=f"inner.{s}.{b}",
                        size=width,
                        producers=((f"{p}.conv1.weight", 0),),
                        consumers=((f"{p}.conv2.weight", 1),),
                        norms=bn(f"{p}.bn1"),
                    )
                )
            if s + 1 < len(self.channels):
                nxt = f"stages.{s + 1}.0"
                consumers += [(f"{nxt}.conv1.weight", 1), (f"{nxt}.shortcut.conv.weight", 1)]
            else:
                consumers.append(("head.weight", 1))
            groups.append(
                UnitGroup(
                    name=f"stage.{s}",
                    size=width,
                    producers=tuple(producers),
                    consumers=tuple(consumers),
                    norms=tuple(norms),
                )
            )
        return groups

    def input_shape(self) -> tuple[int, ...]:
        return (self.in_channels,) + (self.length,) * self.dims

    def example_input(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(n, *self.input_shape(), generator=generator)

    def widened(self, targets: dict[str, int]) -> CNNConfig:
        channels = [targets.get(f"stage.{s}", c) for s, c in enumerate(self.channels)]
        return CNNConfig(self.in_channels, self.num_classes, channels, list(self.blocks),
                         self.dims, self.length, self.kernel_size)

    def deepened(self, positions: list[int]) -> tuple[CNNConfig, dict[str, str], list[str]]:
        """Add one block at the end of stage ``s`` for every ``s`` in ``positions``."""
        blocks = list(self.blocks)
        new = []
        for s in sorted(positions):
            new.append(f"stages.{s}.{blocks[s]}")
            blocks[s] += 1
        cfg = CNNConfig(self.in_channels, self.num_classes, list(self.channels), blocks,
                        self.dims, self.length, self.kernel_size)
        return cfg, {}, new

    def identity_zeros(self, layer: str) -> list[str]:
        # bn2 with zero scale and shift makes the residual branch output exactly zero
        return [f"{layer}.bn2.weight", f"{layer}.bn2.bias"]


def _conv(dims: int) -> type[nn.Module]:
    return nn.Conv1d if dims == 1 else nn.Conv2d


def _bn(dims: int) -> type[nn.Module]:
    return nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d


class ConvBN(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, dims: int) -> None:
        super().__init__()
        self.conv = _conv(dims)(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False)
        self.bn = _bn(dims)(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, cfg: CNNConfig) -> None:
        super().__init__()
        conv, bn, k = _conv(cfg.dims), _bn(cfg.dims), cfg.kernel_size
        self.conv1 = conv(c_in, c_out, k, stride=stride, padding=k // 2, bias=False)
        self.bn1 = bn(c_out)
        self.conv2 = conv(c_out, c_out, k, stride=1, padding=k // 2, bias=False)
        self.bn2 = bn(c_out)
        self.shortcut = (
            ConvBN(c_in, c_out, 1, stride, cfg.dims) if (stride != 1 or c_in != c_out) else None
        )
        self.act1, self.act2 = nn.ReLU(), nn.ReLU()  # modules, so that proxies can hook them

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + (x if self.shortcut is None else self.shortcut(x)))


class ResNet(nn.Module):
    def __init__(self, cfg: CNNConfig) -> None:
        super().__init__()
        self.config = cfg
        self.stem = ConvBN(cfg.in_channels, cfg.channels[0], cfg.kernel_size, 1, cfg.dims)
        self.stem_act = nn.ReLU()
        stages = []
        for s, (width, n_blocks) in enumerate(zip(cfg.channels, cfg.blocks, strict=False)):
            c_in = cfg.channels[max(s - 1, 0)]
            stage = [BasicBlock(c_in if b == 0 else width, width, 2 if (s > 0 and b == 0) else 1, cfg)
                     for b in range(n_blocks)]
            stages.append(nn.Sequential(*stage))
        self.stages = nn.ModuleList(stages)
        self.head = nn.Linear(cfg.channels[-1], cfg.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == self.config.dims + 1:  # no channel axis: a single-channel signal
            x = x.unsqueeze(1)
        x = self.stem_act(self.stem(x))
        for stage in self.stages:
            x = stage(x)
        return self.head(x.flatten(2).mean(-1))
