"""Cost figures of a candidate: parameter count and FLOPs, and the one rule that turns
examples into training FLOPs.

Convention (the usual one, as in Kaplan et al. 2020 and torch's ``FlopCounterMode``):

* a multiply-add is 2 FLOPs; matrix products are counted (linear layers, convolutions,
  attention's ``Q K^T`` and ``A V``), element-wise work (norms, activations, softmax,
  bias adds) is not;
* attention is counted in full, causal mask or not (as ``FlopCounterMode`` counts the
  GPU attention kernels), so the same model counts the same on the CPU, on the GPU and
  on the meta device;
* training one example costs forward + backward = **3 x** the forward FLOPs
  (:data:`TRAINING_FLOPS_PER_FORWARD`); a forward-only pass counts 1x.

Every place that compares compute (search efficiency, growth vs. scratch, the metric's
cost ratio, ``max_flops`` constraints) goes through :func:`flops_per_example` and
:func:`training_flops`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from growsearch.models import count_params

TRAINING_FLOPS_PER_FORWARD = 3  # forward + backward (grads of activations and of weights) = 3 x forward


def _cpu_attention(query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, out_shape: Any = None,
                   **kwargs: Any) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_attention_backward(grad_out_shape: Any, query_shape: Any, key_shape: Any, value_shape: Any, *args: Any,
                            out_shape: Any = None, **kwargs: Any) -> int:
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


# FlopCounterMode has rules for the GPU attention kernels and counts the math path (two
# bmm) that the meta device takes, but none for the CPU kernel: without these, attention
# would count zero on the CPU.
_ATTENTION_RULES = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_attention_backward,
}


def counted_flops(fn: Any, *args: Any) -> int:
    """FLOPs of running ``fn(*args)``, counted by ``FlopCounterMode`` plus the CPU attention rule."""
    counter = FlopCounterMode(display=False, custom_mapping=_ATTENTION_RULES)
    with counter:
        fn(*args)
    return int(counter.get_total_flops())


def flops_per_example(model: nn.Module, example: torch.Tensor) -> int:
    """Forward FLOPs for one example, counted on an actual forward pass of ``model``
    (on its device, the meta device included) -- measured, not estimated from the spec."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        flops = counted_flops(model, example[:1].to(device))
    model.train(was_training)
    return flops


def training_flops(forward_flops_per_example: float, examples: float) -> float:
    """FLOPs of training on ``examples`` examples (forward + backward = 3 x forward).

    ``examples`` may be fractional: the manifold metric reports its cost in
    forward+backward-equivalent examples, a forward-only pass counting 1/3."""
    return TRAINING_FLOPS_PER_FORWARD * forward_flops_per_example * examples


def cost_figures(model: nn.Module, example: torch.Tensor) -> dict[str, int]:
    """``params`` and ``flops`` (forward FLOPs per example) of ``model``."""
    return {"params": count_params(model), "flops": flops_per_example(model, example)}
