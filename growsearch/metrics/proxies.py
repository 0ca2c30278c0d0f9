"""Zero-cost proxies and the short-training baseline, on identical inputs.

Every proxy scores a model at its current weights on one probe batch from the training
split; higher is taken to mean "better" when correlating with gain, as in the papers.

* ``grad_norm``, ``snip``, ``grasp``, ``fisher``, ``synflow``, ``jacob_cov``:
  Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS" (ICLR 2021), summed over
  all parameters (or activations, for fisher). ``snip`` is Lee et al. 2019, ``grasp``
  Wang et al. 2020, ``fisher`` Theis et al. 2018 / Turner et al. 2020, ``synflow``
  Tanaka et al. 2020 (reported as its natural log: it overflows otherwise), ``jacob_cov``
  Mellor et al. 2020 (v1 of "Neural Architecture Search without Training").
* ``naswot``: Mellor et al., ICML 2021 -- log|det K_H| of the Hamming-similarity kernel of
  the binary activation codes (sign of every activation module's input).
* ``short_training``: train a copy for the forward+backward budget the manifold metric
  spent, with the pool's optimiser and batch size; value = -(training loss on the probe
  set), so that higher is better. The honest competitor of any surrogate.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.utils import parametrize

from growsearch.data import Task
from growsearch.train import TrainRecipe, evaluate, task_loss, train

ACTIVATION_TYPES = (nn.ReLU, nn.GELU, nn.Tanh, nn.SiLU)
WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Embedding)


def _weights(model: nn.Module) -> list[torch.Tensor]:
    """Weights of linear, conv and embedding layers (the proxies' 'parameters')."""
    return [m.weight for m in model.modules() if isinstance(m, WEIGHTED)]


def _grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor, create_graph: bool = False):
    weights = _weights(model)
    loss = task_loss(model(x), y)
    return weights, torch.autograd.grad(loss, weights, create_graph=create_graph)


def grad_norm(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    _, grads = _grads(model, x, y)
    return sum(g.norm().item() for g in grads)


def snip(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    weights, grads = _grads(model, x, y)
    return sum((w * g).abs().sum().item() for w, g in zip(weights, grads, strict=True))


def grasp(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """-sum(theta * H g): Hessian-gradient product by double backpropagation (attention
    runs on the math kernel: the fused ones have no second derivative)."""
    with sdpa_kernel(SDPBackend.MATH):
        weights, grads = _grads(model, x, y, create_graph=True)
        g_const = [g.detach() for g in grads]
        z = sum((g * gc).sum() for g, gc in zip(grads, g_const, strict=True))
        hg = torch.autograd.grad(z, weights)
    return -sum((w.detach() * h).sum().item() for w, h in zip(weights, hg, strict=True))


def fisher(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """sum over activation channels of 0.5 * mean_n (sum_spatial a * dL/da)^2."""
    acts: list[torch.Tensor] = []

    def keep(_m, _i, out):
        out.retain_grad()
        acts.append(out)

    hooks = [m.register_forward_hook(keep) for m in model.modules() if isinstance(m, ACTIVATION_TYPES)]
    try:
        task_loss(model(x), y).backward()
    finally:
        for h in hooks:
            h.remove()
    # activations are (N, C) in MLPs, (N, C, *spatial) in CNNs, (N, T, C) in sequence models
    sequence = any(isinstance(m, nn.Embedding) for m in model.modules())
    total = 0.0
    for a in acts:
        if a.grad is None:
            continue
        prod = (a * a.grad).detach()
        if prod.dim() > 2:
            per_channel = prod.sum(1) if sequence else prod.flatten(2).sum(-1)
        else:
            per_channel = prod
        total += 0.5 * per_channel.pow(2).mean(0).sum().item()
    model.zero_grad(set_to_none=True)
    return total


BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _without_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every BatchNorm replaced by the identity."""
    net = copy.deepcopy(model)
    for module in list(net.modules()):
        for name, child in module.named_children():
            if isinstance(child, BATCH_NORMS):
                setattr(module, name, nn.Identity())
    return net


def synflow(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """log of sum |theta * dR/dtheta| with R the output sum of the |theta| network on an
    all-ones input (integer inputs: token 0 everywhere), in float64, in eval mode, with
    BatchNorm removed as in the reference implementation (Abdelfattah et al. build the
    network with ``bn=False`` for synflow): the score must not depend on running statistics."""
    net = _without_batchnorm(model).double().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    ones = torch.zeros_like(x[:1]) if not x.is_floating_point() else torch.ones_like(x[:1]).double()
    out = net(ones).sum()
    weights = _weights(net)
    grads = torch.autograd.grad(out, weights, allow_unused=True)
    score = sum((w * g).abs().sum().item() for w, g in zip(weights, grads, strict=True) if g is not None)
    return math.log(score) if score > 0 else -math.inf


def _input_jacobian(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """d(sum of outputs)/d(input) per example; for token inputs, w.r.t. the embeddings."""
    if x.is_floating_point():
        xg = x.clone().requires_grad_(True)
        model(xg).sum().backward()
        return xg.grad.flatten(1)
    embedded: list[torch.Tensor] = []
    emb = next(m for m in model.modules() if isinstance(m, nn.Embedding))

    def keep(_m, _i, out):
        out.retain_grad()
        embedded.append(out)

    hook = emb.register_forward_hook(keep)
    try:
        model(x).sum().backward()
    finally:
        hook.remove()
    return embedded[0].grad.flatten(1)


def jacob_cov(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    jac = _input_jacobian(model, x).double()
    model.zero_grad(set_to_none=True)
    corr = torch.corrcoef(jac)
    corr = torch.nan_to_num(corr, nan=0.0)
    eig = torch.linalg.eigvalsh(corr).clamp_min(0)
    k = 1e-5
    return -torch.sum(torch.log(eig + k) + 1.0 / (eig + k)).item()


def naswot(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    codes: list[torch.Tensor] = []

    def keep(_m, inputs, _out):
        codes.append((inputs[0] > 0).flatten(1).double())

    hooks = [m.register_forward_hook(keep) for m in model.modules() if isinstance(m, ACTIVATION_TYPES)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    c = torch.cat(codes, dim=1)
    kernel = c @ c.T + (1 - c) @ (1 - c).T
    return torch.linalg.slogdet(kernel)[1].item()


ZERO_COST: dict[str, Callable[[nn.Module, torch.Tensor, torch.Tensor], float]] = {
    "grad_norm": grad_norm, "snip": snip, "grasp": grasp, "fisher": fisher,
    "synflow": synflow, "jacob_cov": jacob_cov, "naswot": naswot,
}


def zero_cost_proxies(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                      names: tuple[str, ...] | None = None) -> dict[str, float]:
    """Every zero-cost proxy of ``model`` on the probe batch ``(x, y)``; the model's
    weights are not changed (gradients are cleared, train/eval mode restored)."""
    was_training = model.training
    model.train()  # BN uses the probe batch, as in the papers' implementations
    device = next(model.parameters()).device
    x, y = x.to(device), y.to(device)
    out = {}
    for name in names or tuple(ZERO_COST):
        # one parametrisation cache per proxy: a masked growth's weight (W * v) is then one
        # tensor per forward, which the proxies that hook or read weights need
        with parametrize.cached():
            out[name] = float(ZERO_COST[name](copy.deepcopy(model), x, y))
    model.train(was_training)
    return out


def short_training(model: nn.Module, task: Task, examples: float, recipe: TrainRecipe,
                   probe: tuple[torch.Tensor, torch.Tensor], seed: int = 0) -> dict[str, float]:
    """Train a copy for ``examples`` forward+backward examples (rounded up to whole
    batches) at the recipe's learning rate without decay; return -(probe training loss)."""
    steps = max(1, math.ceil(examples / recipe.batch_size))
    short = TrainRecipe(**{**recipe.to_dict(), "steps": steps, "schedule": "constant",
                           "warmup_steps": 0})
    clone = copy.deepcopy(model)
    result = train(clone, task, short, seed=seed, evaluate_each_epoch=False,
                   device=next(model.parameters()).device)
    loss = evaluate(clone, *probe)["loss"]
    return {"short_training": -loss, "short_training_examples": result.forward_backward}
