import math

import pytest
import torch
from torch import nn

from growsearch.metrics.cost import flops_per_example
from growsearch.metrics.proxies import fisher, grad_norm, grasp, jacob_cov, naswot, snip, synflow
from growsearch.models import build


def linear(weight):
    m = nn.Sequential(nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        m[0].weight.copy_(torch.tensor(weight, dtype=torch.float32))
    return m


X, Y = torch.tensor([[1.0, 0.0]]), torch.tensor([0])


def test_grad_norm_and_snip_known_answers():
    # zero weights: uniform softmax, gradient [[-0.5, 0], [0.5, 0]]
    assert grad_norm(linear([[0, 0], [0, 0]]), X, Y) == pytest.approx(math.sqrt(0.5))
    assert snip(linear([[0, 0], [0, 0]]), X, Y) == 0.0
    # identity weights: logits [1, 0]; only W[0,0] has a non-zero gradient, p0 - 1
    p0 = math.e / (math.e + 1)
    assert snip(linear([[1, 0], [0, 1]]), X, Y) == pytest.approx(1 - p0, rel=1e-6)


def test_synflow_ignores_batchnorm_running_statistics():
    from conftest import randomize_norms

    spec = {"family": "cnn", "in_channels": 1, "num_classes": 10, "channels": [4, 8], "blocks": [1, 1]}
    torch.manual_seed(0)
    model = build(spec)
    x, y = torch.randn(8, 40), torch.randint(0, 10, (8,))
    before = synflow(model, x, y)
    randomize_norms(model, seed=3)  # new running statistics (and affine parameters) of every BatchNorm
    assert synflow(model, x, y) == pytest.approx(before, rel=1e-12)


def test_synflow_known_answer():
    # |W| on a ones input: R = sum|W|, dR/dW = 1 everywhere, score = sum|W|
    assert synflow(linear([[1, -2], [3, 0.5]]), X, Y) == pytest.approx(math.log(6.5))


def test_grasp_matches_finite_differences():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    x, y = torch.randn(8, 3), torch.randint(0, 2, (8,))
    weights = [model[0].weight, model[2].weight]

    def grads():
        loss = nn.functional.cross_entropy(model(x), y)
        return torch.autograd.grad(loss, weights)

    g = [t.detach().double() for t in grads()]
    eps = 1e-3
    with torch.no_grad():
        for w, gi in zip(weights, g, strict=True):
            w.add_(eps * gi.float())
    g_plus = [t.double() for t in grads()]
    with torch.no_grad():
        for w, gi in zip(weights, g, strict=True):
            w.sub_(eps * gi.float())
    hg = [(gp - gi) / eps for gp, gi in zip(g_plus, g, strict=True)]
    expected = -sum((w.detach().double() * h).sum().item() for w, h in zip(weights, hg, strict=True))
    assert grasp(model, x, y) == pytest.approx(expected, rel=2e-2)


def test_naswot_known_kernels():
    model = nn.Sequential(nn.Linear(2, 2, bias=False), nn.ReLU(), nn.Linear(2, 2))
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(2))
    # codes [1,0] and [0,1]: K = [[2,0],[0,2]]
    assert naswot(model, torch.tensor([[1.0, -1.0], [-1.0, 1.0]]), None) == pytest.approx(math.log(4))
    # identical inputs, identical codes: singular kernel
    assert naswot(model, torch.tensor([[1.0, -1.0], [1.0, -1.0]]), None) == -math.inf


def test_jacob_cov_identical_jacobians():
    model = linear([[1, 2], [3, 4]])
    # a linear model has the same input Jacobian for every example: correlation all ones
    score = jacob_cov(model, torch.randn(2, 2), None)
    k = 1e-5
    assert score == pytest.approx(-(math.log(k) + 1 / k + math.log(2 + k) + 1 / (2 + k)), rel=1e-4)


def test_fisher_by_hand():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    x, y = torch.randn(5, 3), torch.randint(0, 2, (5,))
    h = model[1](model[0](x)).detach().requires_grad_(True)
    nn.functional.cross_entropy(model[2](h), y).backward()
    expected = 0.5 * (h * h.grad).pow(2).mean(0).sum().item()
    assert fisher(model, x, y) == pytest.approx(expected, rel=1e-5)


def test_flops_are_measured():
    mlp = build({"family": "mlp", "in_dim": 40, "out_dim": 10, "hidden": [32, 32]})
    assert flops_per_example(mlp, torch.randn(4, 40)) == 2 * (40 * 32 + 32 * 32 + 32 * 10)
