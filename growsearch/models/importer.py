"""Import a user's plain ``nn.Sequential`` into a growsearch family by inspection.

Accepted shapes (anything else is refused with the offending position):

* MLP: ``[Flatten], (Linear, [LayerNorm], activation)*, Linear`` with one activation type.
* CNN: ``Conv, BatchNorm, ReLU, AdaptiveAvgPool(1), Flatten, Linear`` -- a conv stem and a
  linear head, imported as a ResNet-style CNN with no residual block yet (growth adds
  them). A conv bias is folded into the BatchNorm running mean (exact in eval mode).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from growsearch.errors import ConfigError
from growsearch.models.base import ACTIVATIONS
from growsearch.models.cnn import CNNConfig
from growsearch.models.mlp import MLPConfig

_ACT_NAMES = {cls: name for name, cls in ACTIVATIONS.items()}


def _refuse(i: int, layer: nn.Module, expected: str) -> ConfigError:
    return ConfigError(f"model[{i}]: {type(layer).__name__} is not importable here; expected {expected}")


def _import_mlp(layers: list[nn.Module]) -> tuple[MLPConfig, dict[str, torch.Tensor]]:
    state: dict[str, torch.Tensor] = {}
    hidden: list[int] = []
    acts: set[str] = set()
    norms: list[bool] = []
    i = 1 if isinstance(layers[0], nn.Flatten) else 0
    linears = []
    while i < len(layers):
        if not isinstance(layers[i], nn.Linear) or layers[i].bias is None:
            raise _refuse(i, layers[i], "Linear (with bias)")
        linears.append(layers[i])
        i += 1
        if i == len(layers):
            break
        norm = isinstance(layers[i], nn.LayerNorm)
        if norm:
            p = f"layers.{len(hidden)}.norm"
            state[f"{p}.weight"], state[f"{p}.bias"] = layers[i].weight, layers[i].bias
            i += 1
        if i == len(layers) or type(layers[i]) not in _ACT_NAMES:
            raise _refuse(min(i, len(layers) - 1), layers[min(i, len(layers) - 1)],
                          f"an activation ({', '.join(ACTIVATIONS)})")
        acts.add(_ACT_NAMES[type(layers[i])])
        norms.append(norm)
        hidden.append(linears[-1].out_features)
        i += 1
    if len(acts) > 1 or len(set(norms)) > 1:
        raise ConfigError("model: hidden layers mix activations or LayerNorm use; allowed: one kind for all")
    for j, lin in enumerate(linears):
        p = "head" if j == len(linears) - 1 else f"layers.{j}.fc"
        state[f"{p}.weight"], state[f"{p}.bias"] = lin.weight, lin.bias
    cfg = MLPConfig(linears[0].in_features, linears[-1].out_features, hidden,
                    activation=acts.pop() if acts else "relu", layernorm=bool(norms and norms[0]))
    return cfg, state


def _import_cnn(layers: list[nn.Module], input_shape: tuple[int, ...]) -> tuple[CNNConfig, dict]:
    kinds = [nn.Conv1d | nn.Conv2d, nn.BatchNorm1d | nn.BatchNorm2d, nn.ReLU,
             nn.AdaptiveAvgPool1d | nn.AdaptiveAvgPool2d, nn.Flatten, nn.Linear]
    expected = "Conv, BatchNorm, ReLU, AdaptiveAvgPool(1), Flatten, Linear"
    if len(layers) != len(kinds):
        raise ConfigError(f"model: a CNN must be exactly [{expected}] (got {len(layers)} layers)")
    for i, (layer, kind) in enumerate(zip(layers, kinds, strict=True)):
        if not isinstance(layer, kind):
            raise _refuse(i, layer, expected.split(", ")[i])
    conv, bn, _, _, _, head = layers
    dims = 1 if isinstance(conv, nn.Conv1d) else 2
    k = conv.kernel_size[0]
    if set(conv.kernel_size) != {k} or set(conv.stride) != {1} or set(conv.padding) != {k // 2} \
            or conv.groups != 1 or k % 2 == 0:
        raise ConfigError("model[0]: the conv must have an odd square kernel, stride 1, padding "
                          "kernel//2 and groups 1")
    running_mean = bn.running_mean - (conv.bias if conv.bias is not None else 0)
    cfg = CNNConfig(conv.in_channels, head.out_features, [conv.out_channels], [0], dims,
                    input_shape[-1], k)
    state = {"stem.conv.weight": conv.weight, "stem.bn.weight": bn.weight, "stem.bn.bias": bn.bias,
             "stem.bn.running_mean": running_mean, "stem.bn.running_var": bn.running_var,
             "stem.bn.num_batches_tracked": bn.num_batches_tracked,
             "head.weight": head.weight, "head.bias": head.bias}
    return cfg, state


def from_sequential(model: nn.Sequential, input_shape: tuple[int, ...]) -> tuple[nn.Module, dict[str, Any]]:
    """Import ``model`` into the matching family; returns ``(growsearch model, spec)``.

    ``input_shape`` is one example's shape without the batch axis (CNN: with channels).
    """
    if not isinstance(model, nn.Sequential) or len(model) == 0:
        raise ConfigError(f"model: got {type(model).__name__}; allowed: a non-empty nn.Sequential")
    layers = list(model)
    if any(isinstance(m, (nn.Conv1d, nn.Conv2d)) for m in layers):
        cfg, state = _import_cnn(layers, input_shape)
    else:
        cfg, state = _import_mlp(layers)
    imported = cfg.build()
    imported.load_state_dict({k: v.detach().clone() for k, v in state.items()}, strict=True)
    return imported, cfg.to_spec()
