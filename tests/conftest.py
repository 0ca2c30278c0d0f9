import copy
import signal

import pytest
import torch

torch.set_num_threads(1)


def _default_interrupts() -> None:
    """Ctrl-C and SIGTERM as a terminal gives them. A shell starts a background command
    (``pytest &``, a CI script) with SIGINT ignored, and every process a test starts would
    inherit that: the Ctrl-C tests' subprocesses (rightly) keep ignoring it and never stop."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


_default_interrupts()  # before any fixture, module- or session-scoped ones included


@pytest.fixture(autouse=True)
def _no_leaked_cli_environment():
    """``main([... "--debug"])`` called in-process sets GROWSEARCH_* variables for its Ray
    workers; restore them so that one test's CLI flags never reach another's subprocesses,
    and restore the interrupt signals' dispositions."""
    import os

    before = {k: v for k, v in os.environ.items() if k.startswith("GROWSEARCH_")}
    yield
    _default_interrupts()  # whatever an in-process search or library left behind
    for key in [k for k in os.environ if k.startswith("GROWSEARCH_")]:
        if key not in before:
            del os.environ[key]
    os.environ.update(before)


def randomize_norms(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give norm layers non-trivial affine params and running stats, as after training."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen))
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.LayerNorm)):
            with torch.no_grad():
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen))
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen))
    return model


@pytest.fixture(scope="session")
def mlp_base(tmp_path_factory):
    """A pretrained MNIST-1D MLP checkpoint (a few epochs; seconds)."""
    from growsearch.pretrain import pretrain

    out = tmp_path_factory.mktemp("base") / "mlp"
    pretrain("mlp", "mnist1d", out=out, epochs=3)
    return out


TINY_SEARCH = {
    "name": "tiny",
    "base": {"pretrain": {"family": "mlp", "dataset": "digits", "epochs": 3}},
    "space": "mlp.yaml",
    "candidates": 5,
    "promotion": {"policy": "top_k", "k": 2},
    "training": {"epochs": 3, "batch_size": 64},
    "early_stopping": {"policy": "successive_halving", "grace_epochs": 1, "reduction_factor": 2},
    "manifold": {"probe_size": 32, "steps": 2},
    "executor": {"name": "local"},  # deterministic and fast; tests/test_ray.py covers Ray
    "tracking": {"enabled": False},  # tests/test_tracking.py covers MLflow
}


def tiny_search_config(**changes):
    """A search that runs in seconds on digits (a fresh copy, top-level keys replaced)."""
    cfg = copy.deepcopy(TINY_SEARCH)
    cfg.update(copy.deepcopy(changes))
    return cfg
