import json

import pytest
import torch

from growsearch.errors import ConfigError
from growsearch.models import build, config_from_spec, count_params

SPECS = [
    {"family": "mlp", "in_dim": 40, "out_dim": 10, "hidden": [32, 16], "residual": [False, True]},
    {"family": "mlp", "in_dim": 64, "out_dim": 10, "hidden": [8], "activation": "gelu", "layernorm": True},
    {"family": "cnn", "in_channels": 1, "num_classes": 10, "channels": [8, 16], "blocks": [1, 2]},
    {"family": "cnn", "in_channels": 3, "num_classes": 5, "channels": [4, 8], "blocks": [0, 1], "dims": 2,
     "length": 16},
    {"family": "gpt", "vocab_size": 30, "block_size": 16, "d_model": 16, "n_layers": 2, "n_heads": 4},
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s["family"])
def test_spec_round_trips_through_json(spec):
    cfg = config_from_spec(spec)
    again = config_from_spec(json.loads(json.dumps(cfg.to_spec())))
    assert again == cfg
    a, b = build(cfg), build(again)
    assert count_params(a) == count_params(b)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s["family"])
def test_forward_shapes(spec):
    cfg = config_from_spec(spec)
    x = cfg.example_input(3, torch.Generator().manual_seed(0))
    out = build(cfg)(x)
    if cfg.family == "gpt":
        assert out.shape == (3, cfg.block_size, cfg.vocab_size)
    else:
        assert out.shape == (3, spec.get("out_dim", spec.get("num_classes")))


def test_mlp_param_count_formula():
    cfg = config_from_spec(SPECS[0])
    # dense 40->32, residual 32->16->32, head 32->10
    expected = (40 * 32 + 32) + (32 * 16 + 16 + 16 * 32 + 32) + (32 * 10 + 10)
    assert count_params(build(cfg)) == expected


@pytest.mark.parametrize("spec, message", [
    ({"family": "rnn"}, "spec.family: got 'rnn'; allowed: mlp, cnn, gpt"),
    ({"family": "mlp", "in_dim": 4, "out_dim": 2, "hidden": [0]}, "spec.hidden[0]: got 0"),
    ({"family": "mlp", "in_dim": 4, "out_dim": 2, "hidden": [3], "activation": "swish"}, "spec.activation"),
    ({"family": "mlp", "in_dim": 4, "out_dim": 2, "hidden": [3], "bogus": 1}, "spec.bogus: unknown key"),
    ({"family": "mlp", "in_dim": "4", "out_dim": 2, "hidden": [3]}, "spec.in_dim: got '4'; allowed: int"),
    ({"family": "cnn", "in_channels": 1, "num_classes": 2, "channels": [4], "blocks": [1, 1]}, "spec.blocks"),
    ({"family": "gpt", "vocab_size": 5, "block_size": 4, "d_model": 10, "n_heads": 3},
     "spec.n_heads: 3 does not divide d_model=10"),
])
def test_bad_specs_are_one_line_errors(spec, message):
    with pytest.raises(ConfigError) as err:
        config_from_spec(spec)
    assert message in str(err.value)
    assert "\n" not in str(err.value)
