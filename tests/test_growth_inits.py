"""Growth that trains: the symmetry probe, the mask ramp of masked growth, the recipe checks."""

import copy

import pytest
import torch
from conftest import randomize_norms

from growsearch.checkpoint import load_checkpoint, save_checkpoint
from growsearch.cli import main
from growsearch.data import load_dataset
from growsearch.errors import ConfigError
from growsearch.grow import PRESERVING_INITS, ExpansionPlan, grow, growth_mask, output_diff
from growsearch.grow.symmetry import effective_rank, symmetry_probe
from growsearch.models import build
from growsearch.train import TrainRecipe, train

DIGITS_MLP = {"family": "mlp", "in_dim": 64, "out_dim": 10, "hidden": [12]}


@pytest.fixture(scope="module")
def digits_base():
    task = load_dataset("digits")
    torch.manual_seed(0)
    base = build(DIGITS_MLP)
    train(base, task, TrainRecipe(steps=60, batch_size=64, lr=3e-3), seed=0)
    return base, task


def test_effective_rank_counts_independent_directions():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(500, 4, generator=gen, dtype=torch.float64)
    assert effective_rank(a) == pytest.approx(4, abs=0.3)
    assert effective_rank(torch.cat([a, a], dim=1)) == pytest.approx(effective_rank(a), abs=1e-6)


def test_positive_split_stays_symmetric_and_new_inits_do_not(digits_base):
    """After 150 AdamW steps the copies of the positive split still share their incoming
    weights (cosine > 0.999) and add no activation rank; no other init keeps copies."""
    base, task = digits_base
    x = task.probe(256, seed=0)[0]
    recipe = TrainRecipe(steps=150, batch_size=64, lr=1e-3)  # the tuning pool's rate
    probes = {}
    for init in PRESERVING_INITS:
        grown = grow(base, DIGITS_MLP, ExpansionPlan(width=2), init=init, seed=0)
        train(grown.model, task, recipe, seed=0)
        probes[init] = symmetry_probe(grown.model, grown.widened, x)
    assert probes["split_positive"]["symmetric_fraction"] >= 0.9
    assert probes["split_positive"]["rank_added"] < 1.0
    for init in PRESERVING_INITS:
        if init != "split_positive":
            assert probes[init]["symmetric_fraction"] <= 0.25, (init, probes[init])
            assert probes[init]["rank_added"] > 1.0, (init, probes[init])


def test_mask_ramp_is_exact_at_zero_and_folds_into_a_plain_model(digits_base, tmp_path):
    base, task = digits_base
    spec = {**DIGITS_MLP, "layernorm": False}
    grown = grow(base, spec, ExpansionPlan(width=1.5, depth=1), init="masked", seed=0)
    mask = growth_mask(grown.model)
    assert mask is not None and mask.value == 0.0
    assert grown.max_abs_output_diff <= 1e-5
    # a deep copy carries its own mask; at m=1 folding changes nothing
    twin = copy.deepcopy(grown.model)
    growth_mask(twin).set(1.0)
    before = copy.deepcopy(twin)
    growth_mask(twin).fold()
    assert growth_mask(twin) is None and growth_mask(grown.model) is mask
    assert output_diff(before, twin, task.x_test[:64], dtype=torch.float64) <= 1e-12
    # training ramps the mask and folds it: a plain family model that saves and loads
    result = train(grown.model, task, TrainRecipe(steps=20, batch_size=64, mask_steps=10), seed=0)
    assert result.final["step"] == 20 and growth_mask(grown.model) is None
    assert set(grown.model.state_dict()) == set(build(grown.spec).state_dict())
    save_checkpoint(tmp_path / "m", grown.model, grown.spec, {})
    loaded, _, _ = load_checkpoint(tmp_path / "m")
    assert output_diff(grown.model, loaded, task.x_test[:64]) == 0.0


def test_masked_layernorm_folds_exactly():
    spec = {"family": "gpt", "vocab_size": 11, "block_size": 8, "d_model": 8, "n_layers": 1, "n_heads": 2}
    base = randomize_norms(build(spec))
    grown = grow(base, spec, ExpansionPlan(d_model=12, depth=1), init="masked", seed=0)
    mask = growth_mask(grown.model)
    mask.set(1.0)
    x = torch.randint(0, 11, (4, 8))
    before = copy.deepcopy(grown.model)
    mask.fold()
    assert type(grown.model.ln_f) is torch.nn.LayerNorm
    assert output_diff(before, grown.model, x, dtype=torch.float64) <= 1e-10


def test_mask_schedule_longer_than_the_run_is_refused(digits_base):
    base, task = digits_base
    grown = grow(base, DIGITS_MLP, ExpansionPlan(width=2), init="masked")
    with pytest.raises(ConfigError, match=r"recipe.mask_steps: got 50; allowed: 1..20"):
        train(grown.model, task, TrainRecipe(steps=20, mask_steps=50), seed=0)
    with pytest.raises(ConfigError, match=r"recipe\.mask_steps: got 0"):
        TrainRecipe(mask_steps=0)


def test_unknown_init_on_the_command_line(mlp_base, tmp_path, capsys):
    out = tmp_path / "grown"
    assert main(["grow", str(mlp_base), "--width", "2", "--init", "net2net", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--init" in err[0] and "split_signed" in err[0]
    assert not out.exists()


def test_search_with_a_mask_schedule_longer_than_the_run_writes_nothing(tmp_path, capsys):
    import yaml
    from conftest import tiny_search_config

    # digits: 1437 training examples, batch 64 -> 23 steps an epoch, 69 in 3 epochs
    cfg = tiny_search_config(training={"epochs": 3, "batch_size": 64, "mask_steps": 500})
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "training.mask_steps: got 500; allowed: 1..69" in err[0]
    assert not out.exists()
