"""A model seen as a function of one flat parameter vector.

The manifold metric evaluates the loss at many points of parameter space; copying
weights into modules for each point would dominate its cost. ``FlatModel`` evaluates
``loss(theta)`` with :func:`torch.func.functional_call` on views into a flat vector, and a
batch of points at once with :func:`torch.func.vmap` where that is faster.

A masked growth (:mod:`growsearch.grow.mask`) is evaluated as grown: its flat parameters
are the parametrised tensors' ``original``s, and ``functional_call`` applies the mask's
parametrisations and masked norms to them, so the loss at ``theta0`` is the base's.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn
from torch.func import functional_call, vmap

from growsearch.train import task_loss


class FlatModel:
    """``model`` (kept in eval mode, buffers fixed) as ``theta -> loss``."""

    def __init__(self, model: nn.Module, vectorize: bool | str = "auto") -> None:
        self.model = model.eval()
        params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.names = [n for n, _ in params]
        self.shapes = [p.shape for _, p in params]
        self.sizes = [p.numel() for _, p in params]
        self.theta0 = torch.cat([p.detach().flatten() for _, p in params])
        if vectorize == "auto":
            # measured on CPU: vmap is 1.2-1.7x faster for MLP/CNN and ~1.4x slower for
            # attention (scaled_dot_product_attention has no vmap batching rule)
            vectorize = not any("attn" in n for n in self.names)
        self.vectorize = bool(vectorize)

    @property
    def dim(self) -> int:
        return self.theta0.numel()

    def unflatten(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        return {n: t.view(s) for n, t, s in zip(self.names, theta.split(self.sizes), self.shapes,
                                                 strict=True)}

    def module_of(self) -> list[str]:
        """The module each parameter tensor belongs to (``layers.0.weight`` -> ``layers.0``;
        a parametrised one, ``layers.0.parametrizations.weight.original`` -> ``layers.0``)."""
        return [n.split(".parametrizations.", 1)[0] if ".parametrizations." in n
                else n.rsplit(".", 1)[0] if "." in n else "" for n in self.names]

    def layer_slices(self) -> list[slice]:
        out, start = [], 0
        for size in self.sizes:
            out.append(slice(start, start + size))
            start += size
        return out

    def output(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.model, self.unflatten(theta), (x,))

    def loss(self, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return task_loss(self.output(theta, x), y)

    def log_probs(self, thetas: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Log-probabilities of each row of ``thetas`` on ``x``, flattened to ``(m, n)``:
        the points of function space the function-space estimators measure distances in
        (log-softmax, so the irrelevant shift of the logits does not count)."""
        def one(theta: torch.Tensor) -> torch.Tensor:
            return torch.log_softmax(self.output(theta, x), dim=-1).flatten()
        if self.vectorize:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                return vmap(one)(thetas)
        return torch.stack([one(t) for t in thetas])

    def losses(self, thetas: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Loss of each row of ``thetas`` (shape ``(m, dim)``) on the same batch."""
        if self.vectorize:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                return vmap(lambda t: self.loss(t, x, y))(thetas)
        return torch.stack([self.loss(t, x, y) for t in thetas])

    @torch.no_grad()
    def full_losses(self, thetas: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                    batch_size: int = 512) -> torch.Tensor:
        """Mean loss of each point over a whole probe set, forward only."""
        total = torch.zeros(len(thetas), dtype=torch.float64, device=thetas.device)
        for start in range(0, len(x), batch_size):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]
            total += self.losses(thetas, xb, yb).double() * len(xb)
        return total / len(x)
