"""Masked growth is scored as grown and saved only as a model that equals it (issue 20, item 3).

At mask 0 a masked growth computes the base's function, its LayerNorms/RMSNorms weighting
their statistics over the old units. Folding the mask at 0 into a plain model changes that
function wherever a norm spans widened units, so scores are taken on the model as grown,
and a save that cannot equal it is refused (the CLI saves the ``zero_out`` growth there).
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
from conftest import randomize_norms

from growsearch.checkpoint import load_checkpoint, save_checkpoint
from growsearch.data import Task
from growsearch.errors import PlanError
from growsearch.grow import ExpansionPlan, fold_mask, grow, growth_mask, output_diff
from growsearch.metrics import ManifoldConfig, score_model
from growsearch.metrics.functional import FlatModel
from growsearch.metrics.manifold import manifold_metric
from growsearch.models import build, config_from_spec
from growsearch.train import TrainRecipe

torch.set_num_threads(1)

MLP_LN = {"family": "mlp", "in_dim": 6, "out_dim": 3, "hidden": [8, 8], "layernorm": True}
GPT = {"family": "gpt", "vocab_size": 11, "block_size": 8, "d_model": 16, "n_layers": 2, "n_heads": 2}
CASES = {
    "mlp-layernorm-width1.5": (MLP_LN, ExpansionPlan(width=1.5)),
    "gpt-d_model": (GPT, ExpansionPlan(d_model=24)),
    "gpt-d_model+heads+mlp+depth": (GPT, ExpansionPlan(d_model=32, n_heads=4, mlp_hidden=128, depth=1)),
}
CHEAP = ManifoldConfig(probe_size=32, batch_size=32, steps=1, bisection_steps=1)


def _task(spec: dict, n: int = 96, dtype: torch.dtype = torch.float64) -> Task:
    gen = torch.Generator().manual_seed(3)
    if spec["family"] == "gpt":
        x = torch.randint(0, spec["vocab_size"], (n, spec["block_size"]), generator=gen)
        y = torch.randint(0, spec["vocab_size"], (n, spec["block_size"]), generator=gen)
        return Task("tokens", "lm", x, y, x[:8], y[:8], spec["vocab_size"], x_val=x[:8], y_val=y[:8])
    x = torch.randn(n, spec["in_dim"], generator=gen, dtype=dtype)
    y = torch.randint(0, spec["out_dim"], (n,), generator=gen)
    return Task("points", "classification", x, y, x[:8], y[:8], spec["out_dim"], x_val=x[:8], y_val=y[:8])


def _grown(case: str):
    spec, plan = CASES[case]
    torch.manual_seed(0)
    base = randomize_norms(build(spec))
    return base, spec, grow(base, spec, plan, init="masked", seed=0)


@pytest.mark.parametrize("case", list(CASES))
def test_score_model_scores_a_masked_growth_as_grown(case: str) -> None:
    """L0 of the scored model is the base's loss (float64): the mask is at 0 through its
    parametrisations, not folded (folded at 0 the loss moves by 1e-3..1e-1 here)."""
    base, spec, grown = _grown(case)
    task = _task(spec)
    base64, grown64 = copy.deepcopy(base).double(), copy.deepcopy(grown.model).double()
    assert growth_mask(grown64) is not None
    l_base = manifold_metric(base64, task.x_train, task.y_train, CHEAP).loss0
    scores = score_model(grown64, task, CHEAP)
    assert abs(scores["manifold"]["loss0"] - l_base) <= 1e-6, (scores["manifold"]["loss0"], l_base)
    folded = copy.deepcopy(grown64)
    fold_mask(folded)
    l_fold = manifold_metric(folded, task.x_train, task.y_train, CHEAP).loss0
    assert abs(l_fold - l_base) > 1e-4  # what today's fold at 0 scored instead
    assert growth_mask(grown64) is not None and grown64.training == grown.model.training  # not modified
    assert scores["params"] == grown.params_after


def test_flat_parameters_of_a_masked_growth_are_the_originals_in_their_modules() -> None:
    _, _, grown = _grown("gpt-d_model+heads+mlp+depth")
    flat = FlatModel(grown.model)
    assert any(".parametrizations." in n for n in flat.names)
    folded = copy.deepcopy(grown.model)
    fold_mask(folded)
    plain = FlatModel(folded)
    assert flat.dim == plain.dim
    assert set(flat.module_of()) == set(plain.module_of())  # a weight and its bias: one module


def test_proxies_and_short_training_score_a_masked_growth_as_grown() -> None:
    """Gradient proxies run on the masked model (its parametrised weights one tensor per
    forward) and see the base's function: snip and fisher equal the base's."""
    base, spec, grown = _grown("mlp-layernorm-width1.5")
    task = _task(spec, dtype=torch.float32)
    recipe = TrainRecipe(steps=4, batch_size=32, lr=1e-3, mask_steps=50)  # longer than the short run
    scores = score_model(grown.model, task, CHEAP, proxies=True, short_recipe=recipe)
    reference = score_model(base, task, CHEAP, proxies=True)
    for name in ("snip", "fisher", "jacob_cov"):
        assert scores[name] == pytest.approx(reference[name], rel=1e-4), name
    assert growth_mask(grown.model) is not None and "short_training" in scores


# -- saving -----------------------------------------------------------------------------
def test_untrained_masked_growth_spanned_by_a_norm_is_refused_on_save(tmp_path) -> None:
    for case in CASES:
        _, _, grown = _grown(case)
        target = tmp_path / case
        with pytest.raises(PlanError, match="cannot save a masked growth before training") as err:
            save_checkpoint(target, grown.model, grown.spec, {})
        assert "\n" not in str(err.value) and "--init zero_out" in str(err.value)
        assert not target.exists()  # nothing half-written
        assert growth_mask(grown.model) is not None


def test_a_checkpoint_inside_the_ramp_is_the_model_folded_at_its_value(tmp_path) -> None:
    """Once training has begun the ramp, a checkpoint (a scheduler's rung) is folded at the
    mask's value, as the training loop folds a run stopped there; only an untrained growth
    is refused."""
    _, _, grown = _grown("gpt-d_model")
    growth_mask(grown.model).set(0.5)
    save_checkpoint(tmp_path / "g", grown.model, grown.spec, {})
    folded = copy.deepcopy(grown.model)
    fold_mask(folded)
    loaded, _, _ = load_checkpoint(tmp_path / "g")
    x = config_from_spec(grown.spec).example_input(16, torch.Generator().manual_seed(1))
    assert output_diff(folded, loaded, x, torch.float64) == 0.0


@pytest.mark.parametrize("spec,plan,m", [
    (MLP_LN, ExpansionPlan(width=1.5), 1.0),  # at m = 1 the fold is exact
    (GPT, ExpansionPlan(d_model=24), 1.0),
    ({**MLP_LN, "layernorm": False}, ExpansionPlan(width=1.5, depth=1), 0.0),  # no norm: exact at 0
    (GPT, ExpansionPlan(n_heads=4, mlp_hidden=96, depth=1), 0.0),  # no norm spans these groups
])
def test_a_saved_masked_growth_equals_the_grown_model(spec, plan, m, tmp_path) -> None:
    torch.manual_seed(0)
    base = randomize_norms(build(spec))
    grown = grow(base, spec, plan, init="masked", seed=0)
    growth_mask(grown.model).set(m)
    save_checkpoint(tmp_path / "g", grown.model, grown.spec, {})
    loaded, _, _ = load_checkpoint(tmp_path / "g")
    x = config_from_spec(spec).example_input(32, torch.Generator().manual_seed(1))
    assert growth_mask(loaded) is None
    assert output_diff(grown.model, loaded, x, torch.float64) <= 1e-5


def _checkpoint(tmp_path, spec: dict) -> tuple[torch.nn.Module, str]:
    torch.manual_seed(0)
    base = randomize_norms(build(spec))
    save_checkpoint(tmp_path / "base", base, spec, {})
    return base, str(tmp_path / "base")


@pytest.mark.parametrize("d_model,exact", [(32, True), (24, False)])
def test_cli_grow_saves_the_zero_out_growth_where_a_masked_fold_would_move(tmp_path, capsys, d_model,
                                                                            exact) -> None:
    """The default init is masked: ``grow --out`` saves a plain model that equals the base
    where any plain model can (whole multiples), and reports the deviation where not."""
    from growsearch.cli import main

    base, path = _checkpoint(tmp_path, GPT)
    (tmp_path / "plan.yaml").write_text(f"d_model: {d_model}\n")
    out = tmp_path / "grown"
    assert main(["grow", path, "--plan", str(tmp_path / "plan.yaml"), "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["init"] == "masked" and report["max_abs_output_diff"] <= 1e-10  # as grown
    assert report["saved_init"] == "zero_out" and any("zero_out" in n for n in report["notes"])
    loaded, spec, _ = load_checkpoint(out)
    x = config_from_spec(GPT).example_input(64, torch.Generator().manual_seed(0))
    diff = output_diff(base, loaded, x, torch.float64)
    assert diff == pytest.approx(report["saved_max_abs_output_diff"], rel=1e-6, abs=1e-12)
    assert spec["d_model"] == d_model
    if exact:
        assert diff <= 1e-5
    else:  # no plain model equals it at 1.5x: measured, reported, far below the fold at 0
        assert 1e-5 < diff < 1.0


def test_cli_grow_folds_a_masked_growth_no_norm_spans(tmp_path, capsys) -> None:
    from growsearch.cli import main

    base, path = _checkpoint(tmp_path, GPT)
    out = tmp_path / "grown"
    assert main(["grow", path, "--depth", "1", "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert "saved_init" not in report and report["saved_max_abs_output_diff"] <= 1e-5
    loaded, _, _ = load_checkpoint(out)
    x = config_from_spec(GPT).example_input(64, torch.Generator().manual_seed(0))
    assert output_diff(base, loaded, x, torch.float64) <= 1e-5


# -- Hugging Face families ----------------------------------------------------------------
@pytest.mark.parametrize("arch", ["gpt2", "llama", "bert"])
def test_hf_masked_growth_saves_only_as_itself(arch: str, tmp_path) -> None:
    """Width (a norm spans the stream): refused, nothing written. Depth (no norm masked):
    saved, and ``from_pretrained`` alone reloads the grown model."""
    transformers = pytest.importorskip("transformers")
    from test_hf import logits_diff, tiny

    from growsearch.models.hf import HFModel

    model, spec = tiny(arch)
    wide = grow(model, spec, ExpansionPlan(width=2.0), init="masked", seed=0)
    with pytest.raises(PlanError, match="cannot save a masked growth before training"):
        save_checkpoint(tmp_path / "wide", wide.model, wide.spec, {})
    assert not (tmp_path / "wide").exists()
    deep = grow(model, spec, ExpansionPlan(depth=1), init="masked", seed=0)
    save_checkpoint(tmp_path / "deep", deep.model, deep.spec, {})
    auto = transformers.AutoModelForSequenceClassification if arch == "bert" else transformers.AutoModelForCausalLM
    task = "sequence_classification" if arch == "bert" else "causal_lm"
    plain = HFModel(auto.from_pretrained(tmp_path / "deep"), task)
    assert logits_diff(deep.model, plain, deep.spec) <= 1e-5


@pytest.mark.parametrize("arch", ["gpt2", "llama", "bert"])
def test_cli_grow_of_an_hf_directory_saves_a_model_equal_to_the_base(arch: str, tmp_path, capsys) -> None:
    transformers = pytest.importorskip("transformers")
    from test_hf import logits_diff, tiny

    from growsearch.cli import main
    from growsearch.models.hf import HFModel

    model, spec = tiny(arch)
    model.hf.save_pretrained(tmp_path / "base")
    out = tmp_path / "grown"
    assert main(["grow", f"hf:{tmp_path / 'base'}", "--width", "2", "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["saved_init"] == "zero_out" and report["saved_max_abs_output_diff"] <= 1e-5
    auto = transformers.AutoModelForSequenceClassification if arch == "bert" else transformers.AutoModelForCausalLM
    task = "sequence_classification" if arch == "bert" else "causal_lm"
    plain = HFModel(auto.from_pretrained(out), task)
    assert logits_diff(model, plain, spec) <= 1e-5
