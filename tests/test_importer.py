import re

import pytest
import torch
from conftest import randomize_norms
from torch import nn

from growsearch.errors import ConfigError
from growsearch.grow import ExpansionPlan, grow
from growsearch.models.importer import from_sequential


def same_function(a, b, x):
    a.eval()
    b.eval()
    with torch.no_grad():
        return (a(x) - b(x)).abs().max().item()


@pytest.mark.parametrize("seq", [
    nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3)),
    nn.Sequential(nn.Flatten(), nn.Linear(6, 5), nn.LayerNorm(5), nn.GELU(), nn.Linear(5, 3)),
])
def test_mlp_import_then_grow(seq):
    x = torch.randn(16, 6)
    model, spec = from_sequential(seq, (6,))
    assert spec["family"] == "mlp" and same_function(seq, model, x) < 1e-6
    assert grow(model, spec, ExpansionPlan(width=2, depth=1)).max_abs_output_diff < 1e-5


@pytest.mark.parametrize("dims", [1, 2])
def test_cnn_import_folds_conv_bias(dims):
    conv = nn.Conv1d if dims == 1 else nn.Conv2d
    bn = nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d
    pool = nn.AdaptiveAvgPool1d if dims == 1 else nn.AdaptiveAvgPool2d
    seq = randomize_norms(nn.Sequential(conv(2, 4, 3, padding=1), bn(4), nn.ReLU(), pool(1), nn.Flatten(),
                                        nn.Linear(4, 3)))
    shape = (2,) + (8,) * dims
    x = torch.randn(5, *shape)
    model, spec = from_sequential(seq, shape)
    assert spec["blocks"] == [0] and same_function(seq, model, x) < 1e-5
    assert grow(model, spec, ExpansionPlan(width=2, depth=2)).max_abs_output_diff < 1e-5


@pytest.mark.parametrize("seq, message", [
    (nn.Sequential(nn.Linear(4, 4), nn.Dropout(), nn.Linear(4, 2)), "model[1]: Dropout is not importable"),
    (nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2)),
     "mix activations"),
    (nn.Sequential(nn.Conv1d(1, 4, 3, padding=1), nn.ReLU()), "a CNN must be exactly"),
    (nn.Sequential(nn.Conv1d(1, 4, 3, stride=2, padding=1), nn.BatchNorm1d(4), nn.ReLU(),
                   nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(4, 2)), "stride 1"),
])
def test_unimportable_models_are_refused(seq, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        from_sequential(seq, (1, 8))
