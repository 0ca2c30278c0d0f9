"""The manifold metric: size of the manifold of linearly connected low-loss points.

Reconstruction of Malviya et al., "Manifold Metric: A Loss Landscape Approach for
Predicting Model Performance" (arXiv 2405.15895), whose full text and code are not
available to us. It follows the paper's abstract and the method it builds on, SPRO
(Benton et al., ICML 2021, "Loss Surface Simplexes for Mode Connecting Volumes and
Fast Ensembling"). See docs/metric.md and ../shared/METRIC.md.

``simplex`` estimator (the default, the paper's metric as we reconstruct it):

1. ``L0`` = loss of the expanded model ``theta0`` on a fixed probe set drawn from the
   *training* split; threshold ``tau = L0 * (1 + epsilon)`` (or ``L0 + epsilon``).
2. ``v0 = theta0`` is fixed. For ``k = 1..K`` a vertex ``v_k`` starts at the centroid of
   ``v0..v_{k-1}`` plus a small layer-scaled random offset, and only ``v_k`` is trained
   for ``S`` steps on ``mean_j loss(sum_i a_ij v_i) - lambda * log Vol(v0..v_k)`` with
   ``a_j ~ Dirichlet(1)`` (``m`` samples per step, one probe mini-batch per step).
   ``Vol`` comes from the Cayley-Menger determinant, in log space.
3. Low-loss check: ``M`` uniform points of the simplex are evaluated on the whole probe
   set; while their ``q``-quantile loss exceeds ``tau`` the simplex is shrunk toward
   ``v0`` by a factor ``s`` (bisection), so every point of the final simplex is a
   linearly connected low-loss point.
4. metric = ``(1/K) log Vol(shrunk simplex) = log s + (1/K) log Vol``.

``ray`` estimator (forward only; a cheaper variant, **not** the paper's metric): the
low-loss extent along ``K`` random filter-normalised directions, found by bisection;
metric = mean log extent.

Cost is an output: examples through forward+backward passes, examples through
forward-only passes, their forward+backward equivalent (a forward pass counted as 1/3
of a forward+backward), and wall seconds.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from growsearch._validate import from_dict
from growsearch.errors import ConfigError
from growsearch.metrics.functional import FlatModel

FORWARD_COST = 1.0 / 3.0  # a forward pass, in units of one forward+backward pass


@dataclass
class ManifoldConfig:
    """Every hyperparameter of the estimators, with the defaults used by growsearch.

    The defaults were chosen on the tuning pool (``digits-mlp``) only: the rounded centre of
    the ten best of 60 Optuna TPE trials under a cost cap of 5% of one full training
    (docs/results/tuning-digits-mlp.json, docs/metric.md).
    """

    estimator: Literal["simplex", "ray"] = "simplex"
    vertices: int = 3  # K: vertices added to theta0 (simplex) / directions (ray)
    steps: int = 3  # S: optimisation steps per vertex
    samples: int = 2  # m: simplex points per step
    reg: float = 0.01  # lambda: weight of -log Vol
    epsilon: float = 0.03  # tolerance above L0 (loss units, or a fraction of L0 if relative)
    relative_epsilon: bool = False  # tau = L0 (1 + eps) if true, else L0 + eps
    quantile: float = 0.9  # q of the low-loss check
    check_points: int = 3  # M: points evaluated by the low-loss check
    bisection_steps: int = 3  # shrink-factor bisection steps (resolution 2^-steps)
    probe_size: int = 64  # examples from the training split
    batch_size: int = 32  # probe mini-batch per optimisation step
    lr: float = 0.002  # vertex optimiser learning rate
    optimizer: Literal["adam", "sgd"] = "adam"
    init_scale: float = 0.03  # vertex start offset, relative to each layer's weight RMS
    vectorize: bool | None = None  # vmap over simplex points; None: auto (off for attention)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("vertices", "steps", "samples", "check_points", "probe_size", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"manifold.{name}: got {getattr(self, name)}; allowed: >= 1")
        if not 0 < self.quantile <= 1:
            raise ConfigError(f"manifold.quantile: got {self.quantile}; allowed: in (0, 1]")
        if self.epsilon <= 0 or self.lr <= 0 or self.reg < 0:
            raise ConfigError("manifold.epsilon and manifold.lr must be > 0, manifold.reg >= 0")

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "manifold") -> ManifoldConfig:
        return from_dict(cls, data, where)


@dataclass
class ManifoldResult:
    """The metric, the pieces it is made of, and what it cost."""

    metric: float
    estimator: str
    loss0: float
    tau: float
    log_volume: float  # of the unshrunk simplex (simplex) / 0 (ray)
    shrink: float  # s (simplex) / mean extent (ray)
    vertex_losses: list[float]
    edge_lengths: list[float]
    check_loss: float  # q-quantile loss of the final check
    num_params: int
    forward_backward: int  # examples through forward+backward
    forward: int  # examples through forward only
    seconds: float
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def cost(self) -> float:
        """Forward+backward-equivalent examples (a forward counts 1/3)."""
        return self.forward_backward + FORWARD_COST * self.forward

    @property
    def metric_per_param(self) -> float:
        """Variant: metric minus log sqrt(num_params), removing the trivial growth of edge
        lengths with dimension (random directions grow like sqrt(dim))."""
        return self.metric - 0.5 * math.log(self.num_params)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["cost"] = self.cost
        out["metric_per_param"] = self.metric_per_param
        return out


#: A simplex is degenerate (volume zero) when the smallest eigenvalue of its edge Gram matrix
#: is at most this fraction of the largest: the float64 Gram matrix carries a relative
#: rounding error near 1e-16, so a flat simplex lands far below this and a real one far above.
DEGENERATE_RTOL = 1e-10


def simplex_log_volume(vertices: torch.Tensor) -> torch.Tensor:
    """log of the k-volume of the simplex with ``k+1`` vertices (rows), by Cayley-Menger.

    ``Vol^2 = (-1)^(k+1) / (2^k (k!)^2) * det(CM)`` with the bordered matrix ``CM`` of
    pairwise squared distances. Computed in float64 with the distances rescaled to mean 1
    (the log-volume shifts by ``k/2 log c``), so that the determinant stays well
    conditioned for any parameter scale. Differentiable; ``-inf`` for a degenerate simplex.

    Degeneracy is decided before the determinant, by a tolerance relative to the scale:
    the smallest eigenvalue of the edge Gram matrix against its largest
    (:data:`DEGENERATE_RTOL`). The sign of a near-zero determinant is rounding noise and
    differs between CPUs; this verdict does not.
    """
    k = vertices.shape[0] - 1
    if k == 0:
        return torch.zeros((), dtype=torch.float64, device=vertices.device)
    minus_inf = torch.tensor(-math.inf, dtype=torch.float64, device=vertices.device)
    edges = (vertices[1:] - vertices[0]).double()  # differences first: no cancellation
    gram = edges @ edges.T
    eig = torch.linalg.eigvalsh(gram.detach())
    if not eig[-1] > 0 or eig[0] <= DEGENERATE_RTOL * eig[-1]:
        return minus_inf
    sq = torch.diagonal(gram)
    dist = torch.zeros(k + 1, k + 1, dtype=torch.float64, device=vertices.device)
    dist[1:, 0] = sq
    dist[0, 1:] = sq
    dist[1:, 1:] = (sq[:, None] + sq[None, :] - 2 * gram).clamp_min(0)
    scale = dist.sum() / (k * (k + 1))
    cm = torch.ones(k + 2, k + 2, dtype=torch.float64, device=vertices.device)
    cm[0, 0] = 0
    cm[1:, 1:] = dist / scale
    sign, logabsdet = torch.linalg.slogdet(cm)
    if sign.item() != (-1) ** (k + 1):  # cannot happen above the tolerance; kept as a guard
        return minus_inf
    return 0.5 * (logabsdet - k * math.log(2) - 2 * math.lgamma(k + 1)) + 0.5 * k * torch.log(scale)


def _layer_scaled_noise(flat: FlatModel, gen: torch.Generator, scale: float) -> torch.Tensor:
    """Gaussian noise whose RMS in every layer is ``scale`` times that layer's weight RMS
    (floored at a tenth of the global RMS, so zero-initialised layers also move)."""
    theta = flat.theta0
    global_rms = theta.pow(2).mean().sqrt().item()
    noise = torch.randn(theta.shape, generator=gen).to(theta.device)
    for sl in flat.layer_slices():
        rms = max(theta[sl].pow(2).mean().sqrt().item(), 0.1 * global_rms)
        noise[sl] *= scale * rms
    return noise


def _dirichlet(n: int, k: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` points uniform on the simplex with ``k`` vertices (Dirichlet(1))."""
    e = -torch.log(torch.rand(n, k, generator=gen).clamp_min(1e-12))
    return e / e.sum(dim=1, keepdim=True)


MAX_EXTRA_HALVINGS = 10  # below the bisection's resolution, how far the fallback keeps halving


def _shrink_to_pass(check, bisection_steps: int) -> tuple[float, float]:
    """Largest shrink factor in (0, 1] whose check loss passes, by bisection on [0, 1];
    returns the factor and *its own* check loss -- every returned factor was checked.

    ``check(s)`` returns ``(passes, loss)``. s = 0 is theta0 itself, which passes by
    construction (L0 <= tau). If no bisection point s > 0 passes, the factor keeps halving
    below the resolution (at most :data:`MAX_EXTRA_HALVINGS` times) until one passes; if
    none does, the answer is s = 0 (a metric of -inf: no extent at any tested scale).
    """
    ok, loss = check(1.0)
    if ok:
        return 1.0, loss
    lo, hi, lo_loss = 0.0, 1.0, math.nan
    for _ in range(bisection_steps):
        mid = 0.5 * (lo + hi)
        ok, loss = check(mid)
        if ok:
            lo, lo_loss = mid, loss
        else:
            hi = mid
    if lo > 0:
        return lo, lo_loss
    s = hi
    for _ in range(MAX_EXTRA_HALVINGS):
        s /= 2
        ok, loss = check(s)
        if ok:
            return s, loss
    return 0.0, check(0.0)[1]


def manifold_metric(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                    config: ManifoldConfig | None = None) -> ManifoldResult:
    """The manifold metric of ``model`` around its current weights.

    ``x, y`` is the training data the probe set is drawn from (the first
    ``probe_size`` rows of a seeded permutation). The model is not modified. Runs on the
    device of the model's parameters; deterministic for a given ``config.seed``.
    """
    cfg = config or ManifoldConfig()
    start = time.perf_counter()
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(len(x), generator=gen)[: cfg.probe_size]
    px, py = x[order].to(device), y[order].to(device)
    vectorize = "auto" if cfg.vectorize is None else cfg.vectorize
    was_training = model.training
    flat = FlatModel(model, vectorize)
    counts = {"fb": 0, "fwd": 0}

    def probe_losses(points: torch.Tensor) -> torch.Tensor:
        counts["fwd"] += len(points) * len(px)
        return flat.full_losses(points, px, py)

    theta0 = flat.theta0
    loss0 = probe_losses(theta0[None])[0].item()
    tau = loss0 * (1 + cfg.epsilon) if cfg.relative_epsilon else loss0 + cfg.epsilon
    try:
        if cfg.estimator == "ray":
            result = _ray(flat, cfg, gen, probe_losses, tau)
        else:
            result = _simplex(flat, cfg, gen, probe_losses, tau, px, py, counts)
        metric, log_volume, shrink, check_loss, vertices = result
        with torch.no_grad():
            vertex_losses = probe_losses(vertices).tolist()
            edges = [(vertices[i] - vertices[j]).norm().item()
                     for i in range(len(vertices)) for j in range(i + 1, len(vertices))]
    finally:
        model.train(was_training)
    return ManifoldResult(
        metric=metric, estimator=cfg.estimator, loss0=loss0, tau=tau, log_volume=log_volume,
        shrink=shrink, vertex_losses=vertex_losses, edge_lengths=edges, check_loss=check_loss,
        num_params=flat.dim, forward_backward=counts["fb"], forward=counts["fwd"],
        seconds=time.perf_counter() - start, config=asdict(cfg),
    )


def _simplex(flat: FlatModel, cfg: ManifoldConfig, gen: torch.Generator, probe_losses,
             tau: float, px: torch.Tensor, py: torch.Tensor, counts: dict[str, int]):
    theta0 = flat.theta0
    vertices = [theta0]
    for k in range(1, cfg.vertices + 1):
        fixed = torch.stack(vertices)
        start = fixed.mean(0) + _layer_scaled_noise(flat, gen, cfg.init_scale)
        vk = start.clone().requires_grad_(True)
        opt = (torch.optim.Adam([vk], lr=cfg.lr) if cfg.optimizer == "adam"
               else torch.optim.SGD([vk], lr=cfg.lr, momentum=0.9))
        for _ in range(cfg.steps):
            idx = torch.randint(0, len(px), (cfg.batch_size,), generator=gen).to(px.device)
            alpha = _dirichlet(cfg.samples, k + 1, gen).to(theta0)
            simplex = torch.cat([fixed, vk[None]])
            points = alpha @ simplex
            loss = flat.losses(points, px[idx], py[idx]).mean()
            objective = loss - cfg.reg * simplex_log_volume(simplex).to(loss.dtype)
            opt.zero_grad(set_to_none=True)
            objective.backward()
            opt.step()
            counts["fb"] += cfg.samples * cfg.batch_size
        vertices.append(vk.detach())
    simplex = torch.stack(vertices)
    log_volume = simplex_log_volume(simplex).item()
    alpha = _dirichlet(cfg.check_points, len(vertices), gen).to(theta0)
    points = alpha @ simplex

    def check(s: float) -> tuple[bool, float]:
        losses = probe_losses(theta0 + s * (points - theta0))
        q = torch.quantile(losses, cfg.quantile).item()
        return q <= tau, q

    shrink, check_loss = _shrink_to_pass(check, cfg.bisection_steps)
    metric = math.log(shrink) + log_volume / cfg.vertices
    return metric, log_volume, shrink, check_loss, simplex


def _ray(flat: FlatModel, cfg: ManifoldConfig, gen: torch.Generator, probe_losses, tau: float):
    theta0 = flat.theta0
    extents, losses = [], []
    for _ in range(cfg.vertices):
        d = _layer_scaled_noise(flat, gen, 1.0)  # filter-normalised: unit scale per layer

        def check(t: float, d: torch.Tensor = d) -> tuple[bool, float]:
            loss = probe_losses((theta0 + t * d)[None])[0].item()
            return loss <= tau, loss

        t, loss = _shrink_to_pass(check, cfg.bisection_steps)
        extents.append(t)
        losses.append(loss)
    metric = sum(math.log(t) for t in extents) / len(extents)
    return metric, 0.0, sum(extents) / len(extents), max(losses), theta0[None]
