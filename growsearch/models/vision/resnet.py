"""ResNets (timm's ``ResNet`` and torchvision's, which share parameter names), as data.

A ResNet's unit groups: the residual stream of every stage (``stage.s``: the block
outputs, the stage's downsample shortcut, the stem when stage 0 has no shortcut), and
the inner widths of every block (``inner.s.b`` after conv1, and ``mid.s.b`` after conv2
in a bottleneck). The stream of a stage is produced by the last conv of every block and
its shortcut (and by the stem where stage 0 has no shortcut), normalised per channel by
BatchNorm (exact in eval mode), consumed by the next block's first conv and shortcut, or
the classifier. Names are read off the built
model's state dict, so both libraries and every block count share this one description.

timm takes the widths as ``channels=`` and ``stem_width=`` and the depths as ``layers=``;
torchvision's ``ResNet(block, layers)`` fixes the widths at 64 * 2**s, so a torchvision
base grows in depth only. Supported: the default stem, ``cardinality=1``, ``base_width=64``.
The default stem is 64 channels in both libraries (timm's ``stem_width`` applies to deep
stems only): it does not grow, and a stage 0 that reads it through an identity shortcut
(stock resnet18/34, ``channels[0] == 64``) keeps its width.
"""

from __future__ import annotations

from typing import Any

from growsearch.errors import ConfigError, PlanError
from growsearch.models.base import UnitGroup

BN = ("weight", "bias", "running_mean", "running_var")


def _bn(prefix: str) -> tuple[str, ...]:
    return tuple(f"{prefix}.{k}" for k in BN)


class ResNetLayout:
    """Unit groups, widening and deepening of one ResNet (``names``: its state-dict keys)."""

    def __init__(self, names: frozenset[str], kwargs: dict[str, Any], source: str) -> None:
        self.names, self.source = names, source
        self.layers = [sum(1 for b in range(64) if f"layer{s + 1}.{b}.conv1.weight" in names) for s in range(4)]
        self.bottleneck = "layer1.0.conv3.weight" in names
        self.expansion = 4 if self.bottleneck else 1
        self.width0 = 0  # stage 0's width (set from the shapes by unit_groups)
        if "conv1.weight" not in names:
            raise ConfigError(f"{source}: only the default ResNet stem (one 7x7 conv) is supported; "
                              "deep stems (stem_type) are not")
        if kwargs.get("cardinality", 1) != 1 or kwargs.get("base_width", 64) != 64:
            raise ConfigError(f"{source}: grouped ResNets (cardinality, base_width) are not supported")

    def _has_down(self, s: int) -> bool:
        return f"layer{s + 1}.0.downsample.0.weight" in self.names

    def unit_groups(self, shapes: dict[str, tuple[int, ...]]) -> list[UnitGroup]:
        last = "conv3" if self.bottleneck else "conv2"
        last_bn = "bn3" if self.bottleneck else "bn2"
        stream = {"name": "stem", "producers": [("conv1.weight", 0)], "norms": list(_bn("bn1")), "consumers": []}
        groups: list[UnitGroup] = []

        def close(g: dict[str, Any]) -> None:
            groups.append(UnitGroup(g["name"], shapes[g["producers"][0][0]][0], tuple(g["producers"]),
                                    tuple(g["consumers"]), tuple(g["norms"])))

        for s in range(4):
            first = f"layer{s + 1}.0"
            if self._has_down(s):  # the stream so far ends at this stage's shortcut
                stream["consumers"] += [(f"{first}.conv1.weight", 1), (f"{first}.downsample.0.weight", 1)]
                close(stream)
                stream = {"name": f"stage.{s}", "producers": [(f"{first}.downsample.0.weight", 0)],
                          "norms": list(_bn(f"{first}.downsample.1")), "consumers": []}
            else:  # an identity shortcut: the stage continues the stream it reads
                stream["name"] = f"stage.{s}"
            for b in range(self.layers[s]):
                p = f"layer{s + 1}.{b}"
                if b > 0 or not self._has_down(s):
                    stream["consumers"].append((f"{p}.conv1.weight", 1))
                stream["producers"].append((f"{p}.{last}.weight", 0))
                stream["norms"] += _bn(f"{p}.{last_bn}")
                close({"name": f"inner.{s}.{b}", "producers": [(f"{p}.conv1.weight", 0)], "norms": _bn(f"{p}.bn1"),
                       "consumers": [(f"{p}.conv2.weight", 1)]})
                if self.bottleneck:
                    close({"name": f"mid.{s}.{b}", "producers": [(f"{p}.conv2.weight", 0)], "norms": _bn(f"{p}.bn2"),
                           "consumers": [(f"{p}.conv3.weight", 1)]})
        stream["consumers"].append(("fc.weight", 1))
        close(stream)
        self.width0 = next(g.size for g in groups if g.name == "stage.0")
        stages = [g for g in groups if g.name.startswith("stage.")]  # the stem's own group is fixed: left out
        return stages + [g for g in groups if g.name.startswith(("inner.", "mid."))]

    def coupled(self, wanted: dict[str, int]) -> dict[str, int]:
        """Inner widths follow their stage (``channels[s]``); a stage grows by whole multiples of
        the block expansion. The default stem is 64 channels in both libraries, whatever the
        kwargs: a stage 0 that reads it with no shortcut (stock resnet18/34) stays as it is."""
        wanted = dict(wanted)
        if not self._has_down(0):
            wanted["stage.0"] = self.width0
        for s in range(4):
            width = wanted[f"stage.{s}"]
            if width % self.expansion:
                raise PlanError(f"plan: stage {s} would be {width} channels wide; allowed: a multiple of "
                                f"{self.expansion} (the bottleneck expansion)")
            for b in range(self.layers[s]):
                for kind in ("inner", "mid"):
                    if f"{kind}.{s}.{b}" in wanted:
                        wanted[f"{kind}.{s}.{b}"] = width // self.expansion
        return wanted

    def widened_kwargs(self, sizes: dict[str, int]) -> dict[str, Any]:
        if self.source == "torchvision":
            raise PlanError("plan: torchvision's ResNet fixes its widths at 64 * 2**stage (no channels argument); "
                            "grow a torchvision ResNet in depth, or load the same weights as timm:resnet18")
        return {"channels": [sizes[f"stage.{s}"] // self.expansion for s in range(4)]}

    def deepened(self, positions: list[int]) -> tuple[list[int], list[str]]:
        layers, new = list(self.layers), []
        for s in sorted(positions):
            new.append(f"layer{s + 1}.{layers[s]}")
            layers[s] += 1
        return layers, new

    def identity_zeros(self, layer: str) -> list[str]:
        last_bn = "bn3" if self.bottleneck else "bn2"  # zero scale and shift: the residual branch outputs 0
        return [f"{layer}.{last_bn}.weight", f"{layer}.{last_bn}.bias"]
