"""Function preservation and exact sizes, over many random architectures and plans."""

import pytest
import torch
from conftest import randomize_norms
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from growsearch.errors import PlanError
from growsearch.grow import INITS, PRESERVING_INITS, ExpansionPlan, grow, resolve
from growsearch.models import build, config_from_spec, count_params

TOL = 1e-5
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def mlp_case(draw):
    n = draw(st.integers(1, 3))
    layernorm = draw(st.booleans())
    spec = {"family": "mlp", "in_dim": draw(st.integers(2, 12)), "out_dim": draw(st.integers(2, 6)),
            "hidden": draw(st.lists(st.integers(2, 12), min_size=n, max_size=n)),
            "residual": [False, *draw(st.lists(st.booleans(), min_size=n - 1, max_size=n - 1))],
            "activation": draw(st.sampled_from(["relu", "gelu", "tanh", "silu"])), "layernorm": layernorm}
    # LayerNorm statistics are preserved at whole multiples only (documented)
    widths = [1.0, 2.0, 3.0] if layernorm else [1.0, 1.25, 1.5, 2.0, 2.7]
    plan = {"width": draw(st.sampled_from(widths))}
    if not layernorm and draw(st.booleans()):
        plan = {"widths": [w + draw(st.integers(0, 9)) for w in spec["hidden"]]}
    if draw(st.booleans()):
        plan["insert_at"] = draw(st.lists(st.integers(0, n), min_size=1, max_size=3))
    else:
        plan["depth"] = draw(st.integers(0, 3))
    return spec, plan


@st.composite
def cnn_case(draw):
    s = draw(st.integers(1, 3))
    spec = {"family": "cnn", "in_channels": draw(st.integers(1, 3)), "num_classes": draw(st.integers(2, 5)),
            "channels": draw(st.lists(st.integers(2, 8), min_size=s, max_size=s)),
            "blocks": [draw(st.integers(0, 2)),
                       *draw(st.lists(st.integers(1, 2), min_size=s - 1, max_size=s - 1))],
            "dims": draw(st.sampled_from([1, 2])), "length": 8}
    plan = {"width": draw(st.sampled_from([1.0, 1.3, 1.5, 2.0]))}
    if draw(st.booleans()):
        plan = {"widths": [c + draw(st.integers(0, 6)) for c in spec["channels"]]}
    plan["depth"] = draw(st.integers(0, 3))
    return spec, plan


@st.composite
def gpt_case(draw):
    spec = {"family": "gpt", "vocab_size": draw(st.integers(5, 20)), "block_size": 8,
            "d_model": draw(st.sampled_from([8, 12, 16])), "n_layers": draw(st.integers(0, 2)),
            "n_heads": draw(st.integers(1, 4)), "head_dim": draw(st.integers(2, 6)),
            "mlp_hidden": draw(st.integers(4, 24))}
    plan = {"d_model": spec["d_model"] * draw(st.sampled_from([1, 2])),
            "n_heads": spec["n_heads"] + draw(st.integers(0, 3)),
            "mlp_hidden": spec["mlp_hidden"] + draw(st.integers(0, 10)),
            "depth": draw(st.integers(0, 2))}
    return spec, plan


def check_preserving(spec, plan_dict, seed=0):
    torch.manual_seed(seed)
    cfg = config_from_spec(spec)
    base = randomize_norms(build(cfg), seed)
    plan = ExpansionPlan.from_dict(plan_dict)
    for init in PRESERVING_INITS:
        result = grow(base, spec, plan, init=init, seed=seed)
        assert result.max_abs_output_diff <= TOL, (init, spec, plan_dict, result.max_abs_output_diff)
        assert result.max_abs_output_diff_float32 <= 1e-4
        # exact sizes: the grown model has the parameters of its planned architecture
        assert result.params_after == count_params(build(result.spec))
        new = config_from_spec(result.spec)
        assert new.num_layers() >= cfg.num_layers()
        # the input model is left untouched
        assert result.params_before == count_params(base)
    return result


@SETTINGS
@given(mlp_case())
def test_mlp_growth_preserves_function(case):
    spec, plan = case
    result = check_preserving(spec, plan)
    depth = len(plan.get("insert_at") or []) or plan.get("depth", 0)
    assert len(result.spec["hidden"]) == len(spec["hidden"]) + depth


@SETTINGS
@given(cnn_case())
def test_cnn_growth_preserves_function(case):
    spec, plan = case
    result = check_preserving(spec, plan)
    assert sum(result.spec["blocks"]) == sum(spec["blocks"]) + plan["depth"]


@SETTINGS
@given(gpt_case())
def test_gpt_growth_preserves_function(case):
    spec, plan = case
    result = check_preserving(spec, plan)
    assert result.spec["n_layers"] == spec["n_layers"] + plan["depth"]
    assert result.spec["n_heads"] == plan["n_heads"]


def test_planned_sizes_are_exact():
    spec = {"family": "mlp", "in_dim": 10, "out_dim": 3, "hidden": [8, 6]}
    result = grow(build(spec), spec, ExpansionPlan(widths=[12, 9], insert_at=[1]))
    assert result.spec["hidden"] == [12, 12, 9]
    assert result.spec["residual"] == [False, True, False]
    # 10->12, residual 12->12->12, 12->9, head 9->3
    assert result.params_after == (10 * 12 + 12) + 2 * (12 * 12 + 12) + (12 * 9 + 9) + (9 * 3 + 3)

    spec = {"family": "gpt", "vocab_size": 11, "block_size": 8, "d_model": 8, "n_layers": 1, "n_heads": 2}
    result = grow(build(spec), spec, ExpansionPlan(width=2))
    assert (result.spec["d_model"], result.spec["n_heads"], result.spec["mlp_hidden"]) == (16, 4, 64)
    assert result.spec["head_dim"] == 4  # heads grow in number, not in size


def test_random_init_changes_the_function_and_preserving_does_not():
    spec = {"family": "cnn", "in_channels": 1, "num_classes": 4, "channels": [4, 8], "blocks": [1, 1]}
    base = randomize_norms(build(spec))
    plan = ExpansionPlan(width=1.5, depth=1)
    assert grow(base, spec, plan, init="random").max_abs_output_diff > 1e-3
    for init in PRESERVING_INITS:
        assert grow(base, spec, plan, init=init).max_abs_output_diff <= TOL


def test_positive_split_is_proportional_and_signed_split_is_not():
    spec = {"family": "mlp", "in_dim": 5, "out_dim": 3, "hidden": [4]}
    base = build(spec)
    for init in ("split_positive", "split_signed"):
        grown = grow(base, spec, ExpansionPlan(width=2), init=init).model
        head = grown.head.weight.detach().double()
        # unit j and its copy j+4 read the same inputs; their outgoing weights sum to the original
        assert torch.equal(grown.layers[0].fc.weight[:4], grown.layers[0].fc.weight[4:])
        assert torch.allclose(head[:, :4] + head[:, 4:], base.head.weight.double(), atol=1e-6)
        ratio = head[:, :4] / head[:, 4:]  # per unit: one positive share ratio, or scattered
        spread = (ratio - ratio.mean(0, keepdim=True)).abs().max().item()
        if init == "split_positive":
            assert spread < 1e-5 and (ratio > 0).all()
        else:
            assert spread > 0.1 and (ratio < 0).any()


def test_masked_growth_is_exact_at_any_layernorm_width():
    """Masked LayerNorm statistics cover the old units only at mask 0: no whole multiple needed."""
    for spec, plan in (
            ({"family": "gpt", "vocab_size": 11, "block_size": 8, "d_model": 8, "n_layers": 2, "n_heads": 2},
             ExpansionPlan(d_model=13, n_heads=3, mlp_hidden=40, depth=1)),
            ({"family": "mlp", "in_dim": 6, "out_dim": 3, "hidden": [5, 7], "residual": [False, True],
              "layernorm": True}, ExpansionPlan(width=1.5, depth=2))):
        base = randomize_norms(build(spec))
        assert grow(base, spec, plan, init="split_signed").max_abs_output_diff > TOL  # the documented limit
        assert grow(base, spec, plan, init="masked").max_abs_output_diff <= TOL


def test_layernorm_non_integer_growth_is_reported_not_hidden():
    spec = {"family": "gpt", "vocab_size": 11, "block_size": 8, "d_model": 8, "n_layers": 1, "n_heads": 2}
    result = grow(randomize_norms(build(spec)), spec, ExpansionPlan(d_model=12), init="split_signed")  # copying
    assert result.max_abs_output_diff > TOL
    assert result.notes and "LayerNorm" in result.notes[0]


def test_growth_is_deterministic():
    spec = {"family": "mlp", "in_dim": 6, "out_dim": 3, "hidden": [5, 5]}
    base = build(spec)
    for init in INITS:
        a = grow(base, spec, ExpansionPlan(width=1.6, depth=1), init=init, seed=3).model.state_dict()
        b = grow(base, spec, ExpansionPlan(width=1.6, depth=1), init=init, seed=3).model.state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("spec, plan, message", [
    ({"family": "mlp", "in_dim": 4, "out_dim": 2, "hidden": [8, 8]}, {"widths": [8, 4]},
     "plan.widths[1]: got 4, smaller than the current 8"),
    ({"family": "mlp", "in_dim": 4, "out_dim": 2, "hidden": [8, 8]}, {"widths": [8]},
     "plan.widths: has 1 entries; allowed: one per hidden layer (2)"),
    ({"family": "mlp", "in_dim": 4, "out_dim": 2, "hidden": [8]}, {"insert_at": [5]},
     "plan.insert_at[0]: got 5; allowed: a layer position in 0..1"),
    ({"family": "cnn", "in_channels": 1, "num_classes": 2, "channels": [4, 8], "blocks": [1, 1]},
     {"insert_at": [2]}, "plan.insert_at[0]: got 2; allowed: a stage index in 0..1"),
    ({"family": "mlp", "in_dim": 4, "out_dim": 2, "hidden": [8]}, {"n_heads": 4},
     "plan.n_heads: applies to the gpt and hf families only; this model is mlp"),
    ({"family": "gpt", "vocab_size": 5, "block_size": 4, "d_model": 8, "n_heads": 2}, {"widths": [9]},
     "plan.widths: applies to mlp and cnn"),
    ({"family": "gpt", "vocab_size": 5, "block_size": 4, "d_model": 8, "n_heads": 2}, {"n_heads": 1},
     "plan.n_heads: got 1, smaller than the current 2"),
    ({"family": "mlp", "in_dim": 4, "out_dim": 2, "hidden": [8]}, {"depth": -1}, "plan.depth: got -1"),
    ({"family": "mlp", "in_dim": 4, "out_dim": 2, "hidden": [8]}, {"width": 0.5}, "plan.width: got 0.5"),
])
def test_impossible_plans_are_refused(spec, plan, message):
    with pytest.raises(PlanError) as err:
        resolve(config_from_spec(spec), ExpansionPlan.from_dict(plan))
    assert message in str(err.value)


def test_unknown_init_is_refused():
    spec = {"family": "mlp", "in_dim": 4, "out_dim": 2, "hidden": [8]}
    with pytest.raises(PlanError, match="init: got 'lemon'; allowed: split_signed, masked"):
        grow(build(spec), spec, ExpansionPlan(width=2), init="lemon")


@pytest.mark.parametrize("hidden, depth, positions", [
    ([32], 1, [1]),  # the one layer added to a 1-layer MLP goes after its hidden layer, not on the input
    ([32], 3, [0, 1, 1]),
    ([32, 32], 1, [1]),
    ([32, 32, 32], 1, [2]),
    ([32, 32], 3, [1, 1, 2]),
])
def test_depth_is_spread_with_half_way_rounding_up(hidden, depth, positions):
    cfg = config_from_spec({"family": "mlp", "in_dim": 40, "out_dim": 10, "hidden": hidden})
    assert resolve(cfg, ExpansionPlan(depth=depth)).positions == positions
