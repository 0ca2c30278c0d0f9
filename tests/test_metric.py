import math

import pytest
import torch

from growsearch.data import load_dataset
from growsearch.errors import ConfigError
from growsearch.metrics import ManifoldConfig, manifold_metric, simplex_log_volume
from growsearch.metrics.manifold import _shrink_to_pass
from growsearch.models import build


def embed(points, dim=50, seed=0):
    """Place low-dimensional points in a random orthonormal frame of R^dim, far from 0."""
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    pts = torch.tensor(points, dtype=torch.float64)
    return pts @ q[: pts.shape[1]] + 100.0


def test_unit_triangle_area():
    assert simplex_log_volume(embed([[0, 0], [1, 0], [0, 1]])).item() == pytest.approx(math.log(0.5))


def test_regular_tetrahedron_volume():
    a = 2.0
    pts = [[0, 0, 0], [a, 0, 0], [a / 2, a * math.sqrt(3) / 2, 0],
           [a / 2, a * math.sqrt(3) / 6, a * math.sqrt(2 / 3)]]
    expected = a**3 / (6 * math.sqrt(2))
    assert simplex_log_volume(embed(pts)).item() == pytest.approx(math.log(expected), rel=1e-9)


def test_segment_and_point():
    assert simplex_log_volume(embed([[0.0], [3.0]])).item() == pytest.approx(math.log(3.0))
    assert simplex_log_volume(embed([[1.0, 2.0]])).item() == 0.0


def test_degenerate_simplex_is_minus_infinity():
    # Many frames and offsets: the embedded points carry rounding noise of a different sign
    # each time, so a verdict taken from the determinant's sign would flip between them.
    for seed in range(20):
        for offset in (0.0, 100.0, 1e4):
            collinear = embed([[0, 0], [1, 1], [2, 2]], seed=seed) + offset
            assert simplex_log_volume(collinear).item() == -math.inf, (seed, offset)
            flat_tetra = embed([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0.3, 0.4, 0]], seed=seed) + offset
            assert simplex_log_volume(flat_tetra).item() == -math.inf, (seed, offset)
    same = embed([[0, 0], [0, 0], [0, 0]])
    assert simplex_log_volume(same).item() == -math.inf
    # float32 vertices (as the metric's parameters are): still decided by the tolerance
    assert simplex_log_volume(embed([[0, 0], [1, 1], [2, 2]]).float()).item() == -math.inf


def test_thin_but_real_simplex_has_its_volume():
    # a triangle of height 1e-3 on a base of 2: far above the degeneracy tolerance
    thin = embed([[0, 0], [2, 0], [1, 1e-3]])
    assert simplex_log_volume(thin).item() == pytest.approx(math.log(1e-3), rel=1e-6)


def test_matches_gram_determinant_in_high_dimension():
    v = torch.randn(4, 1000, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 1e-3 + 5
    e = v[1:] - v[0]
    gram_log_vol = 0.5 * torch.logdet(e @ e.T) - math.lgamma(4)
    assert simplex_log_volume(v).item() == pytest.approx(gram_log_vol.item(), rel=1e-8)


def test_log_volume_is_differentiable():
    v = embed([[0, 0], [1, 0], [0, 1]]).requires_grad_(True)
    simplex_log_volume(v).backward()
    assert torch.isfinite(v.grad).all() and v.grad.abs().sum() > 0


def test_shrink_bisection_finds_the_known_boundary():
    # loss(s) = 1 + 4 s^2 against tau = 1.36: the simplex passes for s <= 0.3
    def check(s):
        loss = 1 + 4 * s * s
        return loss <= 1.36, loss

    s, loss = _shrink_to_pass(check, bisection_steps=10)
    assert 0.3 - 2**-10 <= s <= 0.3 and loss <= 1.36
    assert _shrink_to_pass(lambda s: (True, 0.0), 10) == (1.0, 0.0)
    # no bisection point passes: keep halving below the resolution; the factor returned was
    # checked, and the loss returned is its own
    checked = {}

    def narrow(s):
        checked[s] = 1 + s
        return s <= 2**-6, 1 + s

    s, loss = _shrink_to_pass(narrow, 3)
    assert s == 2**-6 and loss == 1 + 2**-6 and s in checked
    # nothing above 0 passes at all: s = 0 (metric -inf), with theta0's own loss
    assert _shrink_to_pass(lambda s: (s == 0, 1.0 + s), 3) == (0.0, 1.0)


@pytest.fixture(scope="module")
def digits_mlp():
    task = load_dataset("digits")
    torch.manual_seed(0)
    return build({"family": "mlp", "in_dim": 64, "out_dim": 10, "hidden": [16]}), task


def test_same_seed_same_value_and_model_untouched(digits_mlp):
    model, task = digits_mlp
    before = {k: v.clone() for k, v in model.state_dict().items()}
    a = manifold_metric(model, task.x_train, task.y_train, ManifoldConfig(seed=3))
    b = manifold_metric(model, task.x_train, task.y_train, ManifoldConfig(seed=3))
    c = manifold_metric(model, task.x_train, task.y_train, ManifoldConfig(seed=4))
    assert a.metric == b.metric and a.vertex_losses == b.vertex_losses
    assert a.metric != c.metric
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_pieces_and_cost_accounting(digits_mlp):
    model, task = digits_mlp
    cfg = ManifoldConfig(estimator="simplex", vertices=3, steps=4, samples=2, batch_size=16, probe_size=100,
                         check_points=5)
    r = manifold_metric(model, task.x_train, task.y_train, cfg)
    assert r.forward_backward == 3 * 4 * 2 * 16
    # L0, the checks (5 points each), the 4 vertex losses: all on the 100-example probe
    checks = (r.forward / 100 - 1 - 4) / 5
    assert checks == int(checks) and 1 <= checks <= 1 + cfg.bisection_steps
    assert len(r.vertex_losses) == 4 and r.vertex_losses[0] == pytest.approx(r.loss0, rel=1e-6)
    assert len(r.edge_lengths) == 6 and min(r.edge_lengths) > 0
    assert r.metric == pytest.approx(math.log(r.shrink) + r.log_volume / 3)
    assert r.check_loss <= r.tau
    # parameter-space products, forward+backward while training (3x), forward for the check
    d, m, k_max, checkpoints = r.num_params, 2, 3, 5
    trained = sum(4 * 3 * (2 * m * (k + 1) * d + 2 * k * k * d) for k in range(1, k_max + 1))
    assert r.param_flops == trained + 2 * checkpoints * (k_max + 1) * d + 2 * k_max * k_max * d
    assert r.flops_per_example == 2 * (64 * 16 + 16 * 10)
    assert r.cost == pytest.approx(r.forward_backward + r.forward / 3 + r.param_flops / (3 * r.flops_per_example))


def test_vectorised_and_looped_agree(digits_mlp):
    model, task = digits_mlp
    a = manifold_metric(model, task.x_train, task.y_train, ManifoldConfig(estimator="simplex", vectorize=True))
    b = manifold_metric(model, task.x_train, task.y_train, ManifoldConfig(estimator="simplex", vectorize=False))
    assert a.metric == pytest.approx(b.metric, rel=1e-4)


def test_ray_variant_is_forward_only(digits_mlp):
    model, task = digits_mlp
    r = manifold_metric(model, task.x_train, task.y_train, ManifoldConfig(estimator="ray"))
    assert r.forward_backward == 0 and r.forward > 0 and math.isfinite(r.metric)


@pytest.mark.parametrize("spec, dataset", [
    ({"family": "cnn", "in_channels": 1, "num_classes": 10, "channels": [4], "blocks": [1], "length": 40},
     "mnist1d"),
    ({"family": "gpt", "vocab_size": 100, "block_size": 64, "d_model": 16, "n_layers": 1, "n_heads": 2},
     "text"),
])
def test_every_family(spec, dataset):
    task = load_dataset(dataset)
    for name in ("simplex", "function", "llc"):
        cfg = ManifoldConfig(estimator=name, steps=2, probe_size=32, batch_size=8, check_points=4)
        r = manifold_metric(build(spec), task.x_train, task.y_train, cfg)
        assert math.isfinite(r.metric) and r.cost > 0, name


def test_bad_config():
    with pytest.raises(ConfigError, match=r"manifold\.vertices: got 0"):
        ManifoldConfig(vertices=0)
    with pytest.raises(ConfigError, match=r"manifold.quantile"):
        ManifoldConfig.from_dict({"quantile": 1.5})


def _rescaled(model, alpha):
    """The same function: the first ReLU layer (weight and bias) times alpha, the next
    layer's weight divided by alpha (ReLU(a z) = a ReLU(z) for a > 0)."""
    import copy

    other = copy.deepcopy(model)
    with torch.no_grad():
        other.layers[0].fc.weight.mul_(alpha)
        other.layers[0].fc.bias.mul_(alpha)
        other.layers[1].fc.weight.div_(alpha)
    return other


def test_function_space_volume_ignores_layer_rescaling():
    """Scaling a ReLU layer by 4 and the next by 1/4 leaves the function-space metric
    unchanged (it measures outputs; steps and offsets are in units of each layer's RMS),
    while the parameter-space simplex sees a different volume."""
    task = load_dataset("digits")
    torch.manual_seed(0)
    model = build({"family": "mlp", "in_dim": 64, "out_dim": 10, "hidden": [16, 16]})
    with torch.no_grad():
        for layer in model.layers:
            layer.fc.bias.uniform_(0.05, 0.1)  # nonzero biases: every parameter is rescaled
    other = _rescaled(model, 4.0)
    x = task.x_train[:64]
    assert torch.allclose(model(x), other(x), atol=1e-5)
    for name in ("function", "function_below"):
        cfg = ManifoldConfig(estimator=name, steps=3, check_points=4)
        a = manifold_metric(model, task.x_train, task.y_train, cfg)
        b = manifold_metric(other, task.x_train, task.y_train, cfg)
        assert b.metric == pytest.approx(a.metric, abs=1e-3), name
    cfg = ManifoldConfig(estimator="simplex", steps=3)
    a = manifold_metric(model, task.x_train, task.y_train, cfg)
    b = manifold_metric(other, task.x_train, task.y_train, cfg)
    assert abs(a.metric - b.metric) > 0.05  # the parameter-space volume is not invariant


@pytest.mark.parametrize("name", ["simplex", "simplex_scaled", "function", "below", "function_below", "ray", "llc",
                                  "binding_random", "binding_simplex"])
def test_every_estimator_is_deterministic_and_finite(digits_mlp, name):
    model, task = digits_mlp
    cfg = ManifoldConfig(estimator=name, steps=4, check_points=4, seed=5)
    a = manifold_metric(model, task.x_train, task.y_train, cfg)
    b = manifold_metric(model, task.x_train, task.y_train, cfg)
    assert a.metric == b.metric and math.isfinite(a.metric) and a.cost > 0
    assert a.estimator == name and len(a.displacement) == len(a.vertex_losses) - 1


def test_llc_counts_its_steps_and_relative_subtracts_the_null(digits_mlp):
    model, task = digits_mlp
    cfg = ManifoldConfig(estimator="llc", vertices=2, steps=10, batch_size=8, lr=1e-5)
    r = manifold_metric(model, task.x_train, task.y_train, cfg)
    assert r.forward_backward == 2 * 10 * 8 and r.metric == -r.shrink  # metric = -LLC
    rel = manifold_metric(model, task.x_train, task.y_train, ManifoldConfig(estimator="simplex", relative=True))
    own = manifold_metric(model, task.x_train, task.y_train, ManifoldConfig(estimator="simplex"))
    from growsearch.metrics.manifold import _fresh_copy

    null = manifold_metric(_fresh_copy(model, 0), task.x_train, task.y_train, ManifoldConfig(estimator="simplex"))
    assert rel.metric == pytest.approx(own.metric - null.metric)
    assert rel.forward_backward == own.forward_backward + null.forward_backward


def test_unknown_estimator():
    with pytest.raises(ConfigError, match=r"estimator: got 'volume'; allowed: simplex, simplex_scaled, function"):
        ManifoldConfig(estimator="volume")


def test_binding_scale_search_finds_the_known_boundary():
    from growsearch.metrics.manifold import _bind_scale

    for start in (0.01, 0.25, 0.37, 10.0):
        calls = []

        def check(t, calls=calls):
            calls.append(t)
            return t <= 0.37, t
        lo, hi, loss = _bind_scale(check, start, bisection_steps=3)
        assert lo <= 0.37 < hi and hi / lo == pytest.approx(2 ** (2 ** -3)) and loss == lo
        assert lo in calls and hi in calls  # both ends were checked
    # a check that always passes cannot be made to bind: reported, not hidden
    lo, hi, _ = _bind_scale(lambda t: (True, 0.0), 0.25, 3)
    assert hi == math.inf and lo == 0.25 * 2 ** 12


@pytest.mark.parametrize("name", ["binding_random", "binding_simplex"])
def test_binding_estimators_bind_and_measure_in_layer_units(digits_mlp, name):
    model, task = digits_mlp
    r = manifold_metric(model, task.x_train, task.y_train, ManifoldConfig(estimator=name))
    assert r.bound is True and r.check_loss <= r.tau
    assert r.metric == pytest.approx(math.log(r.shrink) + r.log_volume / 3)
    # rescaling a layer by 4 (and the next by 1/4: the same function for a ReLU net) rescales the
    # weight norms but not the metric, which is measured in units of each layer's RMS
    other = build({"family": "mlp", "in_dim": 64, "out_dim": 10, "hidden": [16]})
    other.load_state_dict(model.state_dict())
    with torch.no_grad():
        first, last = [m for m in other.modules() if isinstance(m, torch.nn.Linear)][:2]
        first.weight.mul_(4)
        first.bias.mul_(4)
        last.weight.div_(4)
    s = manifold_metric(other, task.x_train, task.y_train, ManifoldConfig(estimator=name))
    assert s.weight_norm_volume > r.weight_norm_volume + 0.2
    assert abs(s.metric - r.metric) < 0.1


@pytest.fixture(scope="module")
def digits_mlp_pool():
    """The tuning pool digits-mlp's 28 grown candidates (a real pool; nothing trained)."""
    from growsearch.bench.pools import get_pool
    from growsearch.bench.predictors import pool_base_model, pretrain_base
    from growsearch.grow import ExpansionPlan, grow

    torch.set_num_threads(1)
    pool = get_pool("digits-mlp")
    task = load_dataset(pool.dataset)
    state, spec, _ = pretrain_base(pool)
    base = pool_base_model(state, spec)
    return task, [grow(base, spec, ExpansionPlan.from_dict(plan), init).model for plan, init in pool.candidates()]


def test_default_estimator_binds_on_a_real_pool_and_is_not_a_weight_norm_formula(digits_mlp_pool):
    from growsearch.bench.stats import kendall
    from growsearch.metrics.manifold import DEFAULT_ESTIMATOR

    task, models = digits_mlp_pool
    runs = [manifold_metric(m, task.x_train, task.y_train, ManifoldConfig()) for m in models]
    assert DEFAULT_ESTIMATOR.startswith("binding_") and all(r.estimator == DEFAULT_ESTIMATOR for r in runs)
    assert all(r.bound is True and r.check_loss <= r.tau for r in runs)  # the loss constraint binds, everywhere
    norms = [r.weight_norm_volume for r in runs]
    assert abs(kendall([r.metric for r in runs], norms)) < 0.5
    # the previous default, on the same candidates, never binds and restates the weight norms
    old = [manifold_metric(m, task.x_train, task.y_train, ManifoldConfig(estimator="simplex_scaled")) for m in models]
    assert sum(bool(r.bound) for r in old) <= 2
    assert kendall([r.metric for r in old], norms) > 0.75
