"""The manifold metric: size of the manifold of linearly connected low-loss points.

Reconstruction of Malviya et al., "Manifold Metric: A Loss Landscape Approach for
Predicting Model Performance" (arXiv 2405.15895), whose full text and code are not
available to us. It follows the paper's abstract and the method it builds on, SPRO
(Benton et al., ICML 2021, "Loss Surface Simplexes for Mode Connecting Volumes and
Fast Ensembling"). See docs/metric.md and ../shared/METRIC.md.

``binding_function`` estimator (the default since issue 20; docs/metric.md says why): K
random layer-RMS-scaled directions span a simplex around ``theta0`` whose scale is searched
until the low-loss check **binds** (passes at ``t``, fails one step up), so the number comes
from the loss for every candidate; metric = (1/K) log Vol of that bound simplex between the
vertices' outputs (log-probabilities on the probe set). Forward only. ``binding_random``
measures the same simplex in layer-RMS units of parameter space, ``binding_simplex`` trains
its directions first (SPRO-style) and binds again.

``simplex`` estimator (the first reconstruction of the paper's metric; its check rarely
binds at its presets, see ``weight_norm_volume``):

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
of a forward+backward), the FLOPs of the matrix products in parameter space, and wall
seconds.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from growsearch._validate import from_dict
from growsearch.errors import ConfigError
from growsearch.grow.mask import fold_mask
from growsearch.metrics.cost import flops_per_example
from growsearch.metrics.functional import FlatModel

FORWARD_COST = 1.0 / 3.0  # a forward pass, in units of one forward+backward pass
DEGENERATE_LOG_DET = math.log(1e-10)
DEFAULT_ESTIMATOR = "binding_function"  # chosen on the tuning pool (issue 20); docs/metric.md says why
_SIMPLEX = {"vertices": 3, "steps": 3, "samples": 2, "reg": 0.01, "check_points": 3, "batch_size": 32,
            "lr": 0.002, "init_scale": 0.03, "llc_gamma": 100.0, "quantile": 0.9}
# the binding estimators: the scale search starts near where the check binds on the tuning
# pool (fewer doublings), the median of 4 check points (docs/results/estimators-digits-mlp.json)
_BINDING = {**_SIMPLEX, "init_scale": 0.25, "quantile": 0.5, "check_points": 4}
# Each estimator's hyperparameters where they differ (chosen on the tuning pools only;
# docs/metric.md, docs/results/estimators-*.json); every key is set for every estimator.
PRESETS: dict[str, dict[str, Any]] = {
    "simplex": _SIMPLEX,
    "simplex_scaled": _SIMPLEX,
    "function": {**_SIMPLEX, "samples": 1, "batch_size": 16},
    "below": {**_SIMPLEX, "check_points": 8},
    "function_below": {**_SIMPLEX, "samples": 1, "batch_size": 16, "check_points": 8},
    "ray": _SIMPLEX,
    "llc": {**_SIMPLEX, "vertices": 1, "steps": 100, "batch_size": 8, "lr": 1e-5, "llc_gamma": 1000.0},
    "binding_simplex": {**_BINDING, "lr": 0.05, "reg": 0.0},
    "binding_random": _BINDING,
    "binding_function": {**_BINDING, "quantile": 0.9},
}  # normalised Cayley-Menger determinant below this: degenerate


@dataclass
class ManifoldConfig:
    """Every hyperparameter of the estimators, with the defaults used by growsearch.

    ``estimator`` names one of :data:`ESTIMATORS`; docs/metric.md says which is the default
    and why (chosen on the tuning pool only, under a cost cap of 5% of one full training).
    """

    estimator: str = DEFAULT_ESTIMATOR  # a key of ESTIMATORS
    # None = the estimator's preset (PRESETS, chosen on the tuning pools)
    vertices: int | None = None  # K: vertices added to theta0 (simplex) / directions (ray) / chains (llc)
    steps: int | None = None  # S: optimisation steps per vertex (SGLD steps per chain for llc)
    samples: int | None = None  # m: simplex points per step
    reg: float | None = None  # lambda: weight of -log Vol
    epsilon: float = 0.03  # tolerance above L0 (loss units, or a fraction of L0 if relative)
    relative_epsilon: bool = False  # tau = L0 (1 + eps) if true, else L0 + eps
    quantile: float | None = None  # q of the low-loss check
    check_points: int | None = None  # M: points evaluated by the low-loss check (or the room-below count)
    bisection_steps: int = 3  # shrink-factor bisection steps (resolution 2^-steps)
    probe_size: int = 64  # examples from the training split
    batch_size: int | None = None  # probe mini-batch per optimisation step
    lr: float | None = None  # vertex optimiser learning rate (relative to the layer RMS if layer_scaled)
    optimizer: Literal["adam", "sgd"] = "adam"
    init_scale: float | None = None  # vertex start offset, relative to each layer's weight RMS
    layer_scaled: bool = False  # vertex steps in units of each layer's RMS (rescaling-invariant)
    below: float = 0.05  # delta of the room-below estimators: loss <= L0 (1 - delta) counts
    relative: bool = False  # report metric(model) - metric(same architecture, fresh init)
    llc_gamma: float | None = None  # localisation strength of the SGLD chain (llc)
    llc_temperature: float = 1.0  # n*beta = llc_temperature * n / log n, n = training-set size
    vectorize: bool | None = None  # vmap over simplex points; None: auto (off for attention)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.estimator not in ESTIMATORS:
            raise ConfigError(f"manifold.estimator: got {self.estimator!r}; allowed: {', '.join(ESTIMATORS)}")
        for name, value in PRESETS[self.estimator].items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        for name in ("vertices", "steps", "samples", "check_points", "probe_size", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"manifold.{name}: got {getattr(self, name)}; allowed: >= 1")
        if not 0 < self.quantile <= 1:
            raise ConfigError(f"manifold.quantile: got {self.quantile}; allowed: in (0, 1]")
        if self.epsilon <= 0 or self.lr <= 0 or self.reg < 0:
            raise ConfigError("manifold.epsilon and manifold.lr must be > 0, manifold.reg >= 0")
        if not 0 < self.below < 1 or self.llc_gamma < 0 or self.llc_temperature <= 0:
            raise ConfigError("manifold.below must be in (0, 1), manifold.llc_gamma >= 0, "
                              "manifold.llc_temperature > 0")

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
    shrink: float  # s (simplex) / mean extent (ray) / fraction below (below) / LLC (llc)
    vertex_losses: list[float]
    edge_lengths: list[float]
    displacement: list[float]  # ||v_k - theta0|| / ||theta0|| per vertex: how far vertices travelled
    check_loss: float  # q-quantile loss of the final check
    # did the low-loss check bind (shrink < 1 / the bound scale found)? None: no such check
    bound: bool | None
    # data-free baseline: (1/K) log Vol of K layer-scaled random offsets of theta0 at
    # init_scale, in parameter space (weight norms and dimension only, no loss consulted)
    weight_norm_volume: float
    num_params: int
    forward_backward: int  # examples through forward+backward
    forward: int  # examples through forward only
    param_flops: float  # FLOPs of matrix products in parameter space (see Probe.count_matmul)
    flops_per_example: float  # the model's forward FLOPs per example (to express param_flops in examples)
    seconds: float
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def cost(self) -> float:
        """Forward+backward-equivalent examples (a forward counts 1/3), the parameter-space
        products included (their FLOPs over one example's forward+backward FLOPs)."""
        extra = self.param_flops / (3 * self.flops_per_example) if self.flops_per_example > 0 else 0.0
        return self.forward_backward + FORWARD_COST * self.forward + extra

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



def _layer_scales(flat: FlatModel) -> torch.Tensor:
    """Per-coordinate scale: the RMS of the coordinate's parameter tensor, floored at a tenth
    of its module's RMS (a zero bias moves with its weight), and only for all-zero modules
    at a tenth of the global RMS. Rescaling a module's parameters by alpha rescales its
    entries by alpha, so everything built on these scales is rescaling-equivariant."""
    theta = flat.theta0
    global_rms = theta.pow(2).mean().sqrt().item()
    modules = flat.module_of()
    slices = flat.layer_slices()
    sq_sum: dict[str, float] = {}
    count: dict[str, int] = {}
    for mod, sl in zip(modules, slices, strict=True):
        sq_sum[mod] = sq_sum.get(mod, 0.0) + theta[sl].pow(2).sum().item()
        count[mod] = count.get(mod, 0) + (sl.stop - sl.start)
    scales = torch.empty_like(theta)
    for mod, sl in zip(modules, slices, strict=True):
        rms = max(theta[sl].pow(2).mean().sqrt().item(), 0.1 * math.sqrt(sq_sum[mod] / count[mod]))
        scales[sl] = rms if rms > 0 else 0.1 * global_rms
    return scales


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


@dataclass
class Probe:
    """What every estimator works on: the model as a function of its flat parameters, the
    probe set (training split), the seeded generator, L0, the threshold and the cost counts."""

    flat: FlatModel
    x: torch.Tensor
    y: torch.Tensor
    gen: torch.Generator
    cfg: ManifoldConfig
    n_train: int  # size of the training split the probe was drawn from (llc's n)
    loss0: float = math.nan
    tau: float = math.nan
    fb: int = 0  # examples through forward+backward
    fwd: int = 0  # examples through forward only
    # FLOPs of the matrix products in parameter space (combinations of vertices, Gram
    # matrices of volumes), forward and backward: the same convention as the model's FLOPs
    param_flops: float = 0.0

    def count_matmul(self, rows: int, inner: int, cols: int, backward: bool = False) -> None:
        """Count one ``(rows x inner) @ (inner x cols)`` product in parameter space (x3 with
        its backward, as for training)."""
        self.param_flops += 2 * rows * inner * cols * (3 if backward else 1)

    def losses(self, points: torch.Tensor) -> torch.Tensor:
        """Loss of every row of ``points`` on the whole probe set (forward only, counted)."""
        self.fwd += len(points) * len(self.x)
        return self.flat.full_losses(points, self.x, self.y)

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One seeded mini-batch of the probe set (``batch_size`` rows)."""
        idx = torch.randint(0, len(self.x), (self.cfg.batch_size,), generator=self.gen).to(self.x.device)
        return self.x[idx], self.y[idx]


@dataclass
class Estimate:
    """What an estimator returns; :func:`manifold_metric` adds the diagnostics and the cost."""

    metric: float
    log_volume: float
    shrink: float
    check_loss: float
    vertices: torch.Tensor  # (K + 1, dim), theta0 first
    # did the low-loss check bind (a wider simplex fails it)? None: the estimator has no such check
    bound: bool | None = None


class Estimator:
    """One way to estimate the size of the manifold of linearly connected low-loss points
    around theta0. Subclasses set ``name`` and implement :meth:`estimate`; all share
    :class:`ManifoldConfig` and the :class:`Probe` (so their costs are counted alike)."""

    name: ClassVar[str] = ""

    def __init__(self, cfg: ManifoldConfig) -> None:
        self.cfg = cfg

    def estimate(self, probe: Probe) -> Estimate:
        raise NotImplementedError


class SimplexEstimator(Estimator):
    """``simplex``: the reconstruction of the paper's metric (SPRO-style simplex in parameter
    space, shrunk toward theta0 until its points stay within epsilon of L0);
    metric = (1/K) log Vol(shrunk simplex)."""

    name = "simplex"
    function_space = False  # measure volumes between the vertices' outputs instead of weights

    def log_volume(self, probe: Probe, simplex: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """log Vol of ``simplex`` (rows = vertices): of the weights, or in function space of the
        vertices' log-probabilities on ``x`` (the whole probe set if None), per example."""
        if not self.function_space:
            return simplex_log_volume(simplex)
        x = probe.x if x is None else x
        if not torch.is_grad_enabled():
            probe.fwd += len(simplex) * len(x)
        return simplex_log_volume(probe.flat.log_probs(simplex, x) / math.sqrt(len(x)))

    def volume_and_points(self, probe: Probe, simplex: torch.Tensor) -> tuple[float, torch.Tensor]:
        """log Vol of the trained simplex and ``check_points`` uniform points of it (the
        parameter-space products counted)."""
        cfg = self.cfg
        with torch.no_grad():
            log_volume = self.log_volume(probe, simplex).item()
        points = _dirichlet(cfg.check_points, len(simplex), probe.gen).to(simplex) @ simplex
        probe.count_matmul(cfg.check_points, len(simplex), probe.flat.dim)
        if not self.function_space:
            probe.count_matmul(cfg.vertices, probe.flat.dim, cfg.vertices)
        return log_volume, points

    def train_vertices(self, probe: Probe) -> torch.Tensor:
        """v0 = theta0 fixed; each v_k starts at the centroid of v0..v_(k-1) plus layer-scaled
        noise and is trained on mean simplex loss - reg * log Vol (only v_k moves)."""
        cfg, flat, gen = self.cfg, probe.flat, probe.gen
        theta0 = flat.theta0
        scales = _layer_scales(flat)
        step_scale = scales if cfg.layer_scaled else torch.ones_like(scales)
        vertices = [theta0]
        for k in range(1, cfg.vertices + 1):
            fixed = torch.stack(vertices)
            start = fixed.mean(0) + cfg.init_scale * scales * torch.randn(theta0.shape, generator=gen).to(theta0)
            u = torch.zeros_like(theta0, requires_grad=True)  # v_k = start + step_scale * u
            opt = (torch.optim.Adam([u], lr=cfg.lr) if cfg.optimizer == "adam"
                   else torch.optim.SGD([u], lr=cfg.lr, momentum=0.9))
            for _ in range(cfg.steps):
                xb, yb = probe.batch()
                alpha = _dirichlet(cfg.samples, k + 1, gen).to(theta0)
                vk = start + step_scale * u
                simplex = torch.cat([fixed, vk[None]])
                loss = flat.losses(alpha @ simplex, xb, yb).mean()
                probe.fb += cfg.samples * len(xb)
                probe.count_matmul(cfg.samples, k + 1, flat.dim, backward=True)
                objective = loss
                if cfg.reg > 0:
                    objective = loss - cfg.reg * self.log_volume(probe, simplex, xb).to(loss.dtype)
                    if self.function_space:
                        probe.fb += (k + 1) * len(xb)
                    else:
                        probe.count_matmul(k, flat.dim, k, backward=True)
                opt.zero_grad(set_to_none=True)
                objective.backward()
                opt.step()
            vertices.append((start + step_scale * u).detach())
        return torch.stack(vertices)

    def estimate(self, probe: Probe) -> Estimate:
        cfg = self.cfg
        simplex = self.train_vertices(probe)
        theta0 = simplex[0]
        log_volume, points = self.volume_and_points(probe, simplex)

        def check(s: float) -> tuple[bool, float]:
            q = torch.quantile(probe.losses(theta0 + s * (points - theta0)), cfg.quantile).item()
            return q <= probe.tau, q

        shrink, check_loss = _shrink_to_pass(check, cfg.bisection_steps)
        if self.function_space and shrink > 0:  # outputs are not linear in s: measure the shrunk simplex
            with torch.no_grad():
                shrunk = self.log_volume(probe, theta0 + shrink * (simplex - theta0)).item()
            metric = shrunk / cfg.vertices
        else:  # Vol(theta0 + s (V - theta0)) = s^K Vol(V)
            metric = (math.log(shrink) if shrink > 0 else -math.inf) + log_volume / cfg.vertices
        return Estimate(metric, log_volume, shrink, check_loss, simplex, bound=shrink < 1)


class ScaledSimplexEstimator(SimplexEstimator):
    """``simplex_scaled``: the parameter-space simplex with vertex steps in units of each
    layer's RMS (Adam on v = start + rms * u), so every layer moves by the same relative amount."""

    name = "simplex_scaled"

    def __init__(self, cfg: ManifoldConfig) -> None:
        super().__init__(dataclasses.replace(cfg, layer_scaled=True))


class FunctionSimplexEstimator(SimplexEstimator):
    """``function``: the simplex with every volume (reward and metric) measured between the
    vertices' outputs (log-probabilities on the probe set), and vertex steps and offsets in
    units of each layer's RMS: directions that do not change the function (duplicate-unit
    symmetries, rescaling a ReLU layer by a and the next by 1/a) count zero."""

    name = "function"
    function_space = True

    def __init__(self, cfg: ManifoldConfig) -> None:
        super().__init__(dataclasses.replace(cfg, layer_scaled=True))


class BelowEstimator(SimplexEstimator):
    """``below``: the room *below* the starting loss. The simplex is trained as for
    ``simplex``; metric = (1/K) log(Vol x fraction of M uniform simplex points whose probe
    loss is <= L0 (1 - delta)), the fraction floored at 1/(2M)."""

    name = "below"

    def estimate(self, probe: Probe) -> Estimate:
        cfg = self.cfg
        simplex = self.train_vertices(probe)
        log_volume, points = self.volume_and_points(probe, simplex)
        losses = probe.losses(points)
        frac = (losses <= probe.loss0 * (1 - cfg.below)).double().mean().item()
        frac = max(frac, 0.5 / cfg.check_points)
        metric = (log_volume + math.log(frac)) / cfg.vertices
        return Estimate(metric, log_volume, frac, torch.quantile(losses, cfg.quantile).item(), simplex)


class FunctionBelowEstimator(BelowEstimator):
    """``function_below``: ``below`` with volumes in function space and layer-scaled steps."""

    name = "function_below"
    function_space = True

    def __init__(self, cfg: ManifoldConfig) -> None:
        super().__init__(dataclasses.replace(cfg, layer_scaled=True))


class RayEstimator(Estimator):
    """``ray`` (forward only, **not** the paper's metric): the low-loss extent along K random
    layer-normalised directions, by bisection; metric = mean log extent."""

    name = "ray"

    def estimate(self, probe: Probe) -> Estimate:
        cfg, theta0 = self.cfg, probe.flat.theta0
        scales = _layer_scales(probe.flat)
        extents, losses = [], []
        for _ in range(cfg.vertices):
            d = scales * torch.randn(theta0.shape, generator=probe.gen).to(theta0)

            def check(t: float, d: torch.Tensor = d) -> tuple[bool, float]:
                loss = probe.losses((theta0 + t * d)[None])[0].item()
                return loss <= probe.tau, loss

            t, loss = _shrink_to_pass(check, cfg.bisection_steps)
            extents.append(t)
            losses.append(loss)
        metric = sum(math.log(t) for t in extents) / len(extents)
        return Estimate(metric, 0.0, sum(extents) / len(extents), max(losses), theta0[None],
                        bound=all(t < 1 for t in extents))


class LLCEstimator(Estimator):
    """``llc``: the local learning coefficient (Lau et al. 2023, "Quantifying degeneracy in
    singular models via the learning coefficient"), an effective-dimension estimate of the
    minimum: lambda = n beta (E[L] - L0) over an SGLD chain localised at theta0,
    ``dw = lr/2 (-n beta grad L_batch - gamma (w - theta0)) + N(0, lr)``, beta = 1/log n.
    A smaller lambda is a more degenerate (larger) low-loss region: metric = -lambda.
    K chains of S steps; the loss average skips the first quarter of each chain. Our own
    code; ``devinterp`` was read as a reference only."""

    name = "llc"

    def estimate(self, probe: Probe) -> Estimate:
        cfg, flat, gen = self.cfg, probe.flat, probe.gen
        theta0 = flat.theta0
        n = max(probe.n_train, 2)
        nbeta = cfg.llc_temperature * n / math.log(n)
        burn = cfg.steps // 4
        chain_means, ends = [], []
        for _ in range(cfg.vertices):
            w = theta0.clone()
            losses = []
            for step in range(cfg.steps):
                xb, yb = probe.batch()
                wg = w.clone().requires_grad_(True)
                loss = flat.losses(wg[None], xb, yb)[0]
                (grad,) = torch.autograd.grad(loss, wg)
                probe.fb += len(xb)
                if step >= burn:
                    losses.append(loss.item())
                noise = torch.randn(theta0.shape, generator=gen).to(theta0)
                w = w - 0.5 * cfg.lr * (nbeta * grad + cfg.llc_gamma * (w - theta0)) + math.sqrt(cfg.lr) * noise
            chain_means.append(sum(losses) / len(losses))
            ends.append(w)
        llc = nbeta * (sum(chain_means) / len(chain_means) - probe.loss0)
        return Estimate(-llc, 0.0, llc, max(chain_means), torch.stack([theta0, *ends]))


MAX_SCALE_DOUBLINGS = 12  # how far the binding search widens or narrows the scale from init_scale


def _bind_scale(check, start: float, bisection_steps: int) -> tuple[float, float, float]:
    """The scale ``t`` at which the low-loss check *binds*: ``check(t)`` passes and
    ``check(t * r)`` fails, ``r = 2 ** (2 ** -bisection_steps)``. From ``start`` the scale
    doubles (or halves) until the verdict flips, at most :data:`MAX_SCALE_DOUBLINGS` times,
    then bisects in log space. Returns ``(t_pass, t_fail, loss at t_pass)``; ``t_fail`` is
    ``inf`` when even the widest scale passes (the constraint could not be made to bind)
    and ``t_pass`` is 0 when even the narrowest fails."""
    ok, loss = check(start)
    lo, hi, lo_loss = (start, math.inf, loss) if ok else (0.0, start, math.nan)
    for _ in range(MAX_SCALE_DOUBLINGS):
        if hi < math.inf and lo > 0:
            break
        t = 2 * lo if hi == math.inf else hi / 2
        ok, loss = check(t)
        if ok:
            lo, lo_loss = t, loss
        else:
            hi = t
    if not (lo > 0 and hi < math.inf):
        return lo, hi, lo_loss
    for _ in range(bisection_steps):
        mid = math.sqrt(lo * hi)
        ok, loss = check(mid)
        if ok:
            lo, lo_loss = mid, loss
        else:
            hi = mid
    return lo, hi, lo_loss


class BindingSimplexEstimator(Estimator):
    """``binding_simplex``: the size of the low-loss simplex around theta0 **at the scale where
    the loss constraint binds**, measured in units of each layer's RMS.

    K directions ``u_k`` (standard normal, in layer-RMS units) span the simplex
    ``{theta0, theta0 + t * rms * u_k}``. The low-loss check evaluates M fixed uniform points
    of it on the probe set; ``t`` is searched (doubling or halving from ``init_scale``, then
    bisection in log space) until the q-quantile loss is <= tau at ``t`` and > tau at the next
    step up: every candidate's number comes from the loss, never from where an optimiser
    happened to stop. With ``steps > 0`` the vertices are then trained (SPRO-style: Adam on
    the mean simplex loss, minus ``reg * log Vol`` if ``reg > 0``; steps relative to the
    bound scale) and the scale is bound again. metric = (1/K) log Vol of the bound simplex in
    layer-RMS units = log t + (1/K) log Vol(0, u_1..u_K): rescaling a layer does not move it,
    weight norms do not enter it. ``shrink`` reports t (the bound scale, relative to each
    layer's RMS)."""

    name = "binding_simplex"
    trains = True  # train the directions at the bound scale, then bind again
    function_space = False  # measure the bound simplex between the vertices' outputs instead

    def estimate(self, probe: Probe) -> Estimate:
        cfg, flat, gen = self.cfg, probe.flat, probe.gen
        theta0 = flat.theta0
        scales = _layer_scales(flat)
        k = cfg.vertices
        u = torch.randn(k, flat.dim, generator=gen).to(theta0)
        alpha = _dirichlet(cfg.check_points, k + 1, gen).to(theta0)[:, 1:]  # weights of v_1..v_K

        def bind(directions: torch.Tensor, start: float) -> tuple[float, float, float]:
            combos = alpha @ directions  # fixed points of the unit simplex, in RMS units
            probe.count_matmul(cfg.check_points, k, flat.dim)

            def check(t: float) -> tuple[bool, float]:
                q = torch.quantile(probe.losses(theta0 + t * scales * combos), cfg.quantile).item()
                return q <= probe.tau, q  # NaN (a diverged point) fails
            return _bind_scale(check, start, cfg.bisection_steps)

        t, t_fail, check_loss = bind(u, cfg.init_scale)
        if self.trains and t > 0 and t_fail < math.inf:
            u = self._train(probe, u, t, scales)
            t, t_fail, check_loss = bind(u, t)
        vertices = torch.cat([theta0[None], theta0 + t * scales * u])
        bound = t > 0 and t_fail < math.inf
        if self.function_space:  # the bound simplex's volume between the vertices' outputs
            probe.fwd += len(vertices) * len(probe.x)
            with torch.no_grad():
                outputs = probe.flat.log_probs(vertices, probe.x) / math.sqrt(len(probe.x))
            log_volume = simplex_log_volume(outputs).item() if t > 0 else -math.inf
            return Estimate(log_volume / k, log_volume, t, check_loss, vertices, bound=bound)
        log_volume = simplex_log_volume(torch.cat([torch.zeros_like(u[:1]), u])).item()
        probe.count_matmul(k, flat.dim, k)
        metric = (math.log(t) if t > 0 else -math.inf) + log_volume / k
        return Estimate(metric, log_volume, t, check_loss, vertices, bound=bound)

    def _train(self, probe: Probe, u: torch.Tensor, t: float, scales: torch.Tensor) -> torch.Tensor:
        """SPRO-style training of the directions at the bound scale: every vertex moves at once,
        by Adam steps of ``lr`` (in units of the directions' own RMS, 1)."""
        cfg, flat, gen = self.cfg, probe.flat, probe.gen
        theta0 = flat.theta0
        w = u.clone().requires_grad_(True)
        opt = torch.optim.Adam([w], lr=cfg.lr)
        for _ in range(cfg.steps):
            xb, yb = probe.batch()
            a = _dirichlet(cfg.samples, len(u) + 1, gen).to(theta0)[:, 1:]
            loss = flat.losses(theta0 + t * scales * (a @ w), xb, yb).mean()
            probe.fb += cfg.samples * len(xb)
            probe.count_matmul(cfg.samples, len(u), flat.dim, backward=True)
            objective = loss
            if cfg.reg > 0:
                probe.count_matmul(len(u), flat.dim, len(u), backward=True)
                objective = loss - cfg.reg * simplex_log_volume(torch.cat([torch.zeros_like(w[:1]), w])).to(loss.dtype)
            opt.zero_grad(set_to_none=True)
            objective.backward()
            opt.step()
        return w.detach()


class BindingRandomEstimator(BindingSimplexEstimator):
    """``binding_random``: ``binding_simplex`` without training (forward only): the extent of
    the low-loss region over a random layer-scaled simplex, scale bound by the loss."""

    name = "binding_random"
    trains = False


class BindingFunctionEstimator(BindingSimplexEstimator):
    """``binding_function``: ``binding_random``'s simplex (random, scale bound by the loss),
    its volume measured in function space: between the vertices' log-probabilities on the
    probe set (per example), as ``function`` does. How far the outputs can move while the loss
    stays low, rather than how far the weights can."""

    name = "binding_function"
    trains = False
    function_space = True


ESTIMATORS: dict[str, type[Estimator]] = {cls.name: cls for cls in (
    SimplexEstimator, ScaledSimplexEstimator, FunctionSimplexEstimator, BelowEstimator, FunctionBelowEstimator,
    RayEstimator, LLCEstimator, BindingSimplexEstimator, BindingRandomEstimator, BindingFunctionEstimator)}


def weight_norm_volume(flat: FlatModel, cfg: ManifoldConfig) -> float:
    """A data-free function of the weights that the metric must *not* reduce to: (1/K) log Vol
    of the simplex {theta0, theta0 + init_scale * rms * g_k}, ``g_k`` standard normal from
    its own generator (seed ``cfg.seed``), in parameter space. It sees weight norms and the
    dimension, never the loss; a review of the previous default (`simplex_scaled`) found that
    metric equal to such a formula within 0.02."""
    gen = torch.Generator().manual_seed(cfg.seed)
    offsets = cfg.init_scale * _layer_scales(flat) * torch.randn(cfg.vertices, flat.dim, generator=gen).to(flat.theta0)
    return simplex_log_volume(torch.cat([torch.zeros_like(offsets[:1]), offsets])).item() / cfg.vertices


def _fresh_copy(model: nn.Module, seed: int) -> nn.Module:
    """The same architecture, freshly initialised with ``seed``: the null expansion of the
    ``relative`` variant (its size, none of its information)."""
    fresh = copy.deepcopy(model)
    fold_mask(fresh)  # a masked growth's reset must reach its stored weights, not the computed ones
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in fresh.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    return fresh


def manifold_metric(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                    config: ManifoldConfig | None = None) -> ManifoldResult:
    """The manifold metric of ``model`` around its current weights, by ``config.estimator``.

    ``x, y`` is the training data the probe set is drawn from (the first
    ``probe_size`` rows of a seeded permutation). The model is not modified. Runs on the
    device of the model's parameters; deterministic for a given ``config.seed``. With
    ``config.relative`` the result is metric(model) - metric(fresh init of the same
    architecture), costs added.
    """
    cfg = config or ManifoldConfig()
    if cfg.relative:
        inner = dataclasses.replace(cfg, relative=False)
        own = manifold_metric(model, x, y, inner)
        null = manifold_metric(_fresh_copy(model, cfg.seed), x, y, inner)
        return dataclasses.replace(own, metric=own.metric - null.metric, config=asdict(cfg),
                                   forward_backward=own.forward_backward + null.forward_backward,
                                   forward=own.forward + null.forward, seconds=own.seconds + null.seconds,
                                   param_flops=own.param_flops + null.param_flops)
    start = time.perf_counter()
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(len(x), generator=gen)[: cfg.probe_size]
    vectorize = "auto" if cfg.vectorize is None else cfg.vectorize
    was_training = model.training
    probe = Probe(FlatModel(model, vectorize), x[order].to(device), y[order].to(device), gen, cfg, len(x))
    try:
        theta0 = probe.flat.theta0
        probe.loss0 = probe.losses(theta0[None])[0].item()
        probe.tau = probe.loss0 * (1 + cfg.epsilon) if cfg.relative_epsilon else probe.loss0 + cfg.epsilon
        est = ESTIMATORS[cfg.estimator](cfg).estimate(probe)
        vertices = est.vertices
        with torch.no_grad():
            vertex_losses = probe.losses(vertices).tolist()
            edges = [(vertices[i] - vertices[j]).norm().item()
                     for i in range(len(vertices)) for j in range(i + 1, len(vertices))]
            norm0 = theta0.norm().item()
            displacement = [((v - theta0).norm() / norm0).item() for v in vertices[1:]]
    finally:
        model.train(was_training)
    return ManifoldResult(
        metric=est.metric, estimator=cfg.estimator, loss0=probe.loss0, tau=probe.tau,
        log_volume=est.log_volume, shrink=est.shrink, vertex_losses=vertex_losses, edge_lengths=edges,
        displacement=displacement, check_loss=est.check_loss, bound=est.bound,
        weight_norm_volume=weight_norm_volume(probe.flat, cfg), num_params=probe.flat.dim,
        forward_backward=probe.fb, forward=probe.fwd, param_flops=probe.param_flops,
        flops_per_example=flops_per_example(model, x[:1]), seconds=time.perf_counter() - start, config=asdict(cfg),
    )
