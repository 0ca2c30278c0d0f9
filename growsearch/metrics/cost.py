"""Cost figures of a candidate: parameter count and FLOPs per example (measured)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from growsearch.models import count_params


def flops_per_example(model: nn.Module, example: torch.Tensor) -> int:
    """Forward FLOPs for one example, counted by torch's FlopCounterMode (a multiply-add
    is 2 FLOPs) on an actual forward pass -- measured, not estimated from the spec."""
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(example[:1].to(next(model.parameters()).device))
    model.train(was_training)
    return int(counter.get_total_flops())


def cost_figures(model: nn.Module, example: torch.Tensor) -> dict[str, int]:
    return {"params": count_params(model), "flops": flops_per_example(model, example)}
