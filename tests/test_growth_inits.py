"""Growth that trains: the symmetry probe, the mask ramp of masked growth, the recipe checks."""

import copy
import math

import pytest
import torch
from conftest import randomize_norms

from growsearch.checkpoint import load_checkpoint, save_checkpoint
from growsearch.cli import main
from growsearch.data import load_dataset
from growsearch.errors import ConfigError, TrainingError
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

    steps = 3 * math.ceil(len(load_dataset("digits").x_train) / 64)  # the run: 3 epochs of batch 64
    cfg = tiny_search_config(training={"epochs": 3, "batch_size": 64, "mask_steps": 500})
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"training.mask_steps: got 500; allowed: 1..{steps}" in err[0]
    assert not out.exists()


def test_a_grown_candidate_trains_with_the_reference_runs_recipe(digits_base, tmp_path, monkeypatch):
    """Issue 20: the base's reference run (plan None) and a grown candidate train with the
    search's recipe as given -- the same learning rate -- so a gain measures the growth."""
    import growsearch.search.trials as trials
    from growsearch.metrics import ManifoldConfig

    base, _ = digits_base
    recipe = TrainRecipe(epochs=1, batch_size=64, lr=1e-3, warmup_steps=2)
    ctx = trials.SearchContext(DIGITS_MLP, base.state_dict(), "digits", recipe, ManifoldConfig(), 0, str(tmp_path))
    seen = []

    class RecipeSeenError(Exception):
        pass

    def spy(model, task, recipe, **kwargs):
        seen.append(recipe)
        raise RecipeSeenError  # the recipe is all this test needs: no training

    monkeypatch.setattr(trials, "train", spy)
    for cid, plan, init in (("reference", None, "masked"), ("grown", {"width": 2.0}, "masked"),
                            ("random", {"width": 2.0, "depth": 1}, "random")):
        assert trials.train_candidate(ctx, cid, plan, init, device="cpu")["stage"] == "failed"
    assert len(seen) == 3
    for got in seen:
        assert got.lr == recipe.lr
        assert got == recipe


def test_grow_masked_saves_a_plain_checkpoint(mlp_base, tmp_path, capsys):
    import json

    out = tmp_path / "masked"
    assert main(["grow", str(mlp_base), "--width", "2", "--depth", "1", "--init", "masked", "--out", str(out),
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["max_abs_output_diff"] <= 1e-5 and report["saved_max_abs_output_diff"] <= 1e-5  # no LayerNorm
    model, spec, _ = load_checkpoint(out)
    assert growth_mask(model) is None and set(model.state_dict()) == set(build(spec).state_dict())


@pytest.mark.parametrize("layernorm, plan, rungs", [
    (False, {"width": 2.0}, (2, 4)),  # a pause inside the ramp, then one after it
    (False, {"width": 1.5, "depth": 1}, (1, 3)),  # two pauses inside the ramp
    (True, {"width": 1.5, "depth": 1}, (1, 3)),  # masked LayerNorms too
])
def test_a_pause_inside_the_mask_ramp_resumes_bit_for_bit(digits_base, tmp_path, layernorm, plan, rungs):
    """Issue 20: synchronous successive halving pauses a masked candidate at a rung inside
    the mask ramp and resumes it from its checkpoint (train_candidate's until=/resume=, the
    path the engine and the Ray workers use); the result must be the uninterrupted
    training's, bit for bit: every epoch's record and the trained weights."""
    from growsearch.metrics import ManifoldConfig
    from growsearch.search.trials import SearchContext, train_candidate
    from growsearch.train import TrainState

    base, task = digits_base
    spec = {**DIGITS_MLP, "layernorm": layernorm}
    if layernorm:
        torch.manual_seed(0)
        base = randomize_norms(build(spec))
    per_epoch = math.ceil(len(task.x_train) / 64)
    recipe = TrainRecipe(epochs=5, batch_size=64, lr=3e-3, mask_steps=3 * per_epoch + 5)  # ramp ends in epoch 4
    ctx = SearchContext(spec, base.state_dict(), "digits", recipe, ManifoldConfig(), 0, str(tmp_path))
    whole = train_candidate(ctx, "c", plan, "masked", device="cpu", checkpoint_dir=tmp_path / "whole")
    assert whole["stage"] == "completed", whole.get("reason")
    staged, resume = tmp_path / "staged", None
    for until in (*rungs, None):
        torch.manual_seed(123)  # whatever the global RNG did in between
        record = train_candidate(ctx, "c", plan, "masked", device="cpu", checkpoint_dir=staged,
                                 until=until, resume=resume)
        assert record["stage"] == ("completed" if until is None else "paused"), record.get("reason")
        assert (staged / TrainState.FILE).exists() == (until is not None)
        if until == rungs[0]:  # the folded checkpoint alone cannot continue the ramp: refused, not diverged
            with pytest.raises(TrainingError, match="inside the mask ramp"):
                train(load_checkpoint(staged)[0], task, recipe, seed=0, resume=TrainState.load(staged))
        resume = staged

    def strip(history):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in history]

    assert strip(record["history"]) == strip(whole["history"])
    a, _, _ = load_checkpoint(tmp_path / "whole")
    b, _, _ = load_checkpoint(staged)
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name
    for key in ("final_score", "final_test_score", "train_cost"):
        assert record[key] == whole[key], key
