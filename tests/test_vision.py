"""timm and torchvision models as bases (the ``vision`` family): growth, exactness, round trips,
traced unit groups, refusals.

Small configs built here, random weights (nothing is downloaded). Exactness is measured in
float64 on the logits, BatchNorm in eval mode with perturbed statistics (unit statistics would
hide an error). These tests need timm and torchvision (the ``vision`` extra, part of ``test``):
they do not skip.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import timm
import torch
import torchvision
from safetensors.torch import load_file, save_file

from growsearch.checkpoint import load_base_model, load_checkpoint, save_checkpoint
from growsearch.cli import main
from growsearch.errors import ConfigError, GrowsearchError, PlanError
from growsearch.grow import ExpansionPlan, fold_mask, grow, growth_mask, output_diff
from growsearch.models import config_from_spec
from growsearch.models.vision import VisionConfig
from growsearch.search.space import planned_config

torch.set_num_threads(1)
TOL = 1e-5
RESNET18 = {"channels": [8, 16, 16, 32], "num_classes": 5, "in_chans": 1}  # stage 0 reads the stem by a shortcut
RESNET50 = {"channels": [4, 8, 8, 16], "num_classes": 5}
VIT = {"img_size": 16, "patch_size": 4, "embed_dim": 24, "depth": 2, "num_heads": 3, "num_classes": 5}
BASES = {
    "timm-resnet18": VisionConfig("timm", "resnet18", RESNET18, [1, 16, 16]),
    "timm-resnet50": VisionConfig("timm", "resnet50", RESNET50, [3, 16, 16]),
    "timm-vit": VisionConfig("timm", "vit_tiny_patch16_224", VIT, [3, 16, 16]),
    "torchvision-resnet18": VisionConfig("torchvision", "resnet18", {"num_classes": 5}, [3, 16, 16]),
}
TRACED = {  # timm architectures with no adapter: their unit groups are traced
    "convnext_atto": {"dims": [8, 16, 24, 32], "depths": [1, 1, 2, 1], "num_classes": 5},
    "efficientnet_b0": {"num_classes": 5},
    "mobilenetv3_small_050": {"num_classes": 5},
}


def _trained_looking(cfg: VisionConfig, seed: int = 0) -> torch.nn.Module:
    """A model with non-trivial norm parameters and statistics, in eval mode."""
    torch.manual_seed(seed)
    model = cfg.build()
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith(("running_var", "norm1.weight", "norm2.weight", "norm.weight", "bn1.weight",
                              "bn2.weight", "bn3.weight")):
                t.copy_(0.5 + torch.rand_like(t))
            elif name.endswith(("running_mean", "bias")) and t.is_floating_point():
                t.copy_(0.1 * torch.randn_like(t))
    return model.eval()


PLANS = {"width": ExpansionPlan(width=2), "depth": ExpansionPlan(depth=2), "mixed": ExpansionPlan(width=2, depth=1)}


@pytest.mark.parametrize("base", ["timm-resnet18", "timm-resnet50", "timm-vit"])
@pytest.mark.parametrize("kind", list(PLANS))
@pytest.mark.parametrize("init", ["split_signed", "zero_out", "masked"])
def test_growth_preserves_logits_and_matches_planned_architecture(base: str, kind: str, init: str) -> None:
    cfg = BASES[base]
    model = _trained_looking(cfg)
    result = grow(model, cfg, PLANS[kind], init=init, seed=1)
    assert result.max_abs_output_diff <= TOL, (base, kind, init, result.max_abs_output_diff)
    assert result.params_after > result.params_before
    assert result.spec == planned_config(cfg, PLANS[kind]).to_spec()  # the search's cost check sees this model
    grown = config_from_spec(result.spec)
    assert (grown.num_layers() > cfg.num_layers()) == (kind != "width" and base == "timm-vit")


def test_torchvision_resnet_grows_in_depth_and_refuses_width_in_one_line() -> None:
    cfg = BASES["torchvision-resnet18"]
    model = _trained_looking(cfg)
    result = grow(model, cfg, ExpansionPlan(depth=2), init="split_signed")
    assert result.max_abs_output_diff <= TOL and result.spec["kwargs"]["layers"] == [2, 3, 2, 3]
    with pytest.raises(PlanError, match="torchvision's ResNet fixes its widths") as err:
        grow(model, cfg, ExpansionPlan(width=2))
    assert "\n" not in str(err.value)


def test_stock_resnet18_keeps_stage0_at_the_fixed_stem_width() -> None:
    """timm's default stem is 64 channels whatever the kwargs; stock resnet18's stage 0 reads it
    through identity shortcuts, so only stages 1-3 (and their blocks) widen."""
    cfg = VisionConfig("timm", "resnet18", {"num_classes": 5}, [3, 16, 16])
    result = grow(_trained_looking(cfg), cfg, ExpansionPlan(width=1.5), init="split_signed")
    assert result.spec["kwargs"]["channels"] == [64, 192, 384, 768]
    assert result.max_abs_output_diff <= TOL


def test_vit_non_integer_width_is_measured_and_masked_is_exact() -> None:
    """d_model 24 -> 32 is not a whole multiple: LayerNorm statistics move under a split
    (measured, with a note); masked growth weights the statistics and stays exact."""
    cfg = BASES["timm-vit"]
    model = _trained_looking(cfg)
    split = grow(model, cfg, ExpansionPlan(d_model=32), init="split_signed")
    assert split.spec["kwargs"]["num_heads"] == 4 and split.spec["kwargs"]["embed_dim"] == 32
    assert split.max_abs_output_diff > TOL and split.notes
    masked = grow(model, cfg, ExpansionPlan(d_model=32), init="masked")
    assert masked.max_abs_output_diff <= TOL


def test_vit_heads_follow_width_and_disagreement_is_refused() -> None:
    cfg = BASES["timm-vit"]
    planned = planned_config(cfg, ExpansionPlan(n_heads=5))
    assert planned.kwargs["embed_dim"] == 40 and planned.kwargs["num_heads"] == 5
    with pytest.raises(PlanError, match="d_model 48 and n_heads 5 disagree"):
        grow(cfg.build(), cfg, ExpansionPlan(d_model=48, n_heads=5))
    planned = planned_config(cfg, ExpansionPlan(mlp_hidden=100))
    assert timm.create_model(cfg.name, **planned.kwargs).blocks[0].mlp.fc1.out_features == 100


def _rebuild(directory) -> torch.nn.Module:
    """The saved model rebuilt with its library alone, as a user would (no growsearch code)."""
    if (directory / "timm.json").exists():
        recipe = json.loads((directory / "timm.json").read_text())
        model = timm.create_model(recipe["name"], **recipe["kwargs"])
    else:
        recipe = json.loads((directory / "torchvision.json").read_text())
        block = getattr(torchvision.models.resnet, recipe["block"])
        model = torchvision.models.resnet.ResNet(block, **recipe["kwargs"])
    model.load_state_dict(load_file(directory / "model.safetensors"))
    return model.eval()


@pytest.mark.parametrize("base,plan", [("timm-resnet18", ExpansionPlan(width=2, depth=1)),
                                       ("timm-resnet50", ExpansionPlan(width=1.5, depth=1)),
                                       ("timm-vit", ExpansionPlan(width=2, depth=1)),
                                       ("torchvision-resnet18", ExpansionPlan(depth=1))])
def test_saved_growth_rebuilds_with_its_library_alone(base: str, plan: ExpansionPlan, tmp_path) -> None:
    cfg = BASES[base]
    model = _trained_looking(cfg)
    result = grow(model, cfg, plan, init="split_signed", seed=2)
    save_checkpoint(tmp_path / "grown", result.model, result.spec)
    rebuilt = _rebuild(tmp_path / "grown")
    x = cfg.example_input(8, torch.Generator().manual_seed(0))
    assert output_diff(rebuilt, result.model, x, dtype=torch.float64) == 0.0
    assert output_diff(rebuilt, model, x, dtype=torch.float64) <= TOL
    # and the saved folder is a base again: timm:DIR / torchvision:DIR
    loaded, spec, _ = load_base_model(f"{cfg.library}:{tmp_path / 'grown'}")
    assert spec == result.spec and output_diff(loaded, result.model, x) == 0.0


@pytest.mark.parametrize("name", [*TRACED, "torchvision:mobilenet_v3_small"])
@pytest.mark.parametrize("width", [2.0, 1.5])
def test_traced_width_growth_preserves_logits(name: str, width: float, tmp_path) -> None:
    if name.startswith("torchvision:"):  # its classifier is found by tracing too: the classes do not grow
        cfg = VisionConfig("torchvision", name.split(":")[1], {"num_classes": 5}, [3, 32, 32])
    else:
        cfg = VisionConfig("timm", name, TRACED[name], [3, 32, 32])
    assert cfg.arch == "traced" and len(cfg.unit_groups()) >= 4
    model = _trained_looking(cfg)
    result = grow(model, cfg, ExpansionPlan(width=width), init="split_signed", seed=3)
    if width.is_integer() or not any(g.normalized for g in cfg.unit_groups()):
        assert result.max_abs_output_diff <= TOL, (name, width, result.max_abs_output_diff)
    else:  # ConvNeXt's LayerNorms span its stream: a non-integer multiple moves their statistics (measured)
        assert result.max_abs_output_diff > TOL and result.notes
    assert result.params_after > 1.5 * result.params_before
    # the grown model is the constructor's model with resized layers: it saves and loads
    save_checkpoint(tmp_path / "grown", result.model, result.spec)
    assert not (tmp_path / "grown" / f"{cfg.library}.json").exists()  # the library alone cannot rebuild it
    loaded, _spec, _ = load_checkpoint(tmp_path / "grown")
    x = cfg.example_input(4, torch.Generator().manual_seed(0))
    assert output_diff(loaded, result.model, x) == 0.0


@pytest.mark.parametrize("name", ["efficientnet_b0", "mobilenetv3_small_050"])
def test_traced_masked_and_zero_out_preserve(name: str) -> None:
    cfg = VisionConfig("timm", name, TRACED[name], [3, 32, 32])
    model = _trained_looking(cfg)
    for init in ("zero_out", "masked"):
        result = grow(model, cfg, ExpansionPlan(width=1.5), init=init)
        if growth_mask(result.model) is not None:
            fold_mask(result.model)
        assert output_diff(model, result.model, cfg.example_input(4, torch.Generator().manual_seed(0)),
                           dtype=torch.float64) <= TOL


@pytest.mark.parametrize("name,kwargs,refusal", [
    ("regnetx_002", {}, "layer s1.b1.conv2.conv is a grouped convolution (groups=3)"),
    ("densenet121", {"growth_rate": 8, "block_config": [1, 1, 1, 1]}, "that a concat (torch.cat, split, slice)"),
])
def test_traced_refusal_is_one_line_naming_the_layer(name: str, kwargs: dict, refusal: str) -> None:
    cfg = VisionConfig("timm", name, {**kwargs, "num_classes": 5}, [3, 32, 32])
    with pytest.raises(ConfigError) as err:
        cfg.unit_groups()
    assert refusal in str(err.value) and "\n" not in str(err.value)
    assert str(err.value).startswith(f"traced: cannot grow timm:{name}: layer ")


def test_traced_depth_and_convnext_masked_are_refused() -> None:
    cfg = VisionConfig("timm", "convnext_atto", TRACED["convnext_atto"], [3, 32, 32])
    with pytest.raises(PlanError, match="grows in width only"):
        grow(cfg.build(), cfg, ExpansionPlan(depth=1))
    with pytest.raises(PlanError, match="found LayerNorm2d"):  # channels-first LayerNorm: no masked statistics
        grow(cfg.build(), cfg, ExpansionPlan(width=2), init="masked")


# -- bases from users' files, and bad inputs --------------------------------------------------
def _weights(tmp_path, cfg: VisionConfig, name: str = "w.safetensors") -> str:
    torch.manual_seed(0)
    path = tmp_path / name
    state = {k: v.contiguous() for k, v in cfg.build().state_dict().items()}
    if name.endswith(".safetensors"):
        save_file(state, path)
    else:
        torch.save(state, path)
    return str(path)


def _source(library: str, name: str, weights: str, kwargs: dict, input_size: list[int]) -> str:
    return f"{library}:" + json.dumps({"name": name, "weights": weights, "kwargs": kwargs, "input_size": input_size})


def test_a_users_weights_file_loads_as_a_base(tmp_path) -> None:
    cfg = BASES["timm-resnet18"]
    for file in ("w.safetensors", "w.pt"):
        _model, spec, meta = load_base_model(_source("timm", "resnet18", _weights(tmp_path, cfg, file),
                                                    RESNET18, [1, 16, 16]))
        assert spec == cfg.to_spec() and meta == {}


@pytest.mark.parametrize("case,expected", [
    ("unknown", "timm:resnet1800: unknown model; allowed: a name in timm.list_models()"),
    ("mismatch", "the weights in"),
    ("too_small", "input_size: [1, 16, 16] cannot go through timm:vit_tiny_patch16_224"),
    ("no_weights", "base.weights: timm:resnet18 needs a weights file"),
    ("bad_kwarg", "timm:resnet18: cannot build the model with kwargs"),
])
def test_bad_vision_bases_are_one_line(case: str, expected: str, tmp_path) -> None:
    good = _weights(tmp_path, BASES["timm-resnet18"])
    sources = {
        "unknown": _source("timm", "resnet1800", good, RESNET18, [1, 16, 16]),
        "mismatch": _source("timm", "resnet18", good, {**RESNET18, "channels": [8, 16, 16, 64]}, [1, 16, 16]),
        "too_small": _source("timm", "vit_tiny_patch16_224", _weights(tmp_path, BASES["timm-vit"], "v.pt"), VIT,
                             [1, 16, 16]),
        "no_weights": _source("timm", "resnet18", "", RESNET18, [1, 16, 16]),
        "bad_kwarg": _source("timm", "resnet18", good, {**RESNET18, "wings": 2}, [1, 16, 16]),
    }
    with pytest.raises(GrowsearchError) as err:
        load_base_model(sources[case])
    assert expected in str(err.value) and "\n" not in str(err.value)


def _digits_npz(path, size: int = 16) -> str:
    """scikit-learn's digits upsampled to size x size, one channel (an offline image set)."""
    from growsearch.data import load_dataset

    task = load_dataset("digits")
    def up(x):
        return torch.nn.functional.interpolate(x[:, None], size=(size, size), mode="bilinear").numpy()
    np.savez(path, x_train=up(task.x_train[:300]), y_train=task.y_train[:300].numpy(),
             x_test=up(task.x_test[:100]), y_test=task.y_test[:100].numpy())
    return str(path)


def test_cli_grows_a_timm_folder_and_bad_ones_exit_2(tmp_path, capsys) -> None:
    cfg = VisionConfig("timm", "resnet18", {**RESNET18, "num_classes": 10}, [1, 16, 16])
    save_checkpoint(tmp_path / "base", _trained_looking(cfg), cfg.to_spec())
    five = BASES["timm-resnet18"]
    save_checkpoint(tmp_path / "five", _trained_looking(five), five.to_spec())
    data = _digits_npz(tmp_path / "digits16.npz")
    code = main(["grow", f"timm:{tmp_path / 'base'}", "--dataset", data, "--width", "2", "--depth", "1",
                 "--init", "split_signed", "--out", str(tmp_path / "out"), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["max_abs_output_diff"] <= TOL
    assert _rebuild(tmp_path / "out").fc.in_features == 64
    code = main(["score", f"timm:{tmp_path / 'base'}", "--dataset", data, "--width", "2", "--json"])
    scored = json.loads(capsys.readouterr().out)
    assert code == 0 and scored["params"] > report["params_before"] and np.isfinite(scored["manifold_metric"])
    (tmp_path / "empty").mkdir()
    for argv, expected in [
        ([f"timm:{tmp_path / 'empty'}"], "not a folder with timm.json and model.safetensors"),
        ([f"timm:{tmp_path / 'base'}", "--dataset", "digits"], "inputs of shape (8, 8) do not fit"),
        ([f"timm:{tmp_path / 'five'}", "--dataset", data], "has 10 classes but"),
    ]:
        code = main(["grow", *argv, "--width", "2"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and expected in err and len(err.splitlines()) == 1, err


def test_search_config_takes_name_weights_kwargs(tmp_path) -> None:
    from growsearch.search import load_config, run_search

    base = VisionConfig("timm", "resnet18", {**RESNET18, "num_classes": 10}, [1, 16, 16])
    weights = _weights(tmp_path, base)
    data = _digits_npz(tmp_path / "digits16.npz")
    cfg = {"base": {"timm": "resnet18", "weights": weights, "kwargs": base.kwargs, "input_size": [1, 16, 16]},
           "dataset": data, "space": "timm_resnet.yaml", "candidates": 2, "promotion": {"k": 1},
           "training": {"epochs": 1, "batch_size": 64}, "early_stopping": {"policy": "none"},
           "manifold": {"probe_size": 8, "batch_size": 8, "steps": 2},
           "executor": {"name": "local"}, "tracking": {"enabled": False}}
    result = run_search(load_config(cfg), tmp_path / "run")
    assert result.best is not None and (tmp_path / "run" / "best" / "timm.json").exists()
    assert _rebuild(tmp_path / "run" / "best").num_classes == 10
    again = run_search(load_config(cfg), tmp_path / "run", resume=True)  # resume: nothing recomputed
    assert again.best["id"] == result.best["id"]
    with pytest.raises(ConfigError, match="weights, kwargs and input_size go with a timm or torchvision base"):
        load_config({**cfg, "base": {"checkpoint": str(tmp_path), "weights": weights}})


@pytest.mark.slow
def test_search_on_a_timm_vit_through_ray_and_mlflow(tmp_path) -> None:
    import mlflow

    from growsearch.search import load_config, run_search

    weights = tmp_path / "vit.safetensors"
    data = _digits_npz(tmp_path / "digits16.npz")
    vit = {**VIT, "in_chans": 1, "num_classes": 10}
    torch.manual_seed(0)
    save_file({k: v.contiguous() for k, v in timm.create_model("vit_tiny_patch16_224", **vit).state_dict().items()},
              weights)
    cfg = {"name": "vit-ray", "base": {"timm": "vit_tiny_patch16_224", "weights": str(weights), "kwargs": vit,
                                       "input_size": [1, 16, 16]},
           "dataset": data, "space": "timm_vit.yaml", "candidates": 3, "promotion": {"k": 1},
           "training": {"epochs": 1, "batch_size": 64}, "early_stopping": {"policy": "none"},
           "manifold": {"probe_size": 8, "batch_size": 8, "steps": 2},
           "executor": {"name": "ray", "max_concurrent_trials": 1},
           "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "vit"}}
    result = run_search(load_config(cfg), tmp_path / "run")
    assert result.best is not None
    best = _rebuild(tmp_path / "run" / "best")
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("vit").experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and len(runs) >= 4
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    logged = mlflow.pytorch.load_model(f"runs:/{parents[0].info.run_id}/best_model")
    x = torch.randn(2, 1, 16, 16)
    assert torch.allclose(logged(x), best(x), atol=1e-5)


def test_bad_vision_configs_exit_2_in_one_line_and_write_nothing(tmp_path, capsys) -> None:
    import yaml

    weights = _weights(tmp_path, BASES["timm-resnet18"])
    vit_weights = _weights(tmp_path, BASES["timm-vit"], "vit.safetensors")
    data = _digits_npz(tmp_path / "digits16.npz")
    cases = {
        "unknown model name": ({"timm": "resnet1800", "weights": weights, "kwargs": RESNET18},
                               "timm:resnet1800: unknown model"),
        "weights that do not match": ({"timm": "resnet18", "weights": weights,
                                       "kwargs": {**RESNET18, "channels": [8, 16, 16, 64]}},
                                      "do not match the model: 'fc.weight' has shape (5, 32)"),
        "an input size the model cannot take": ({"timm": "vit_tiny_patch16_224", "weights": vit_weights,
                                                 "kwargs": VIT, "input_size": [3, 8, 8]},
                                                "input_size: [3, 8, 8] cannot go through timm:vit_tiny_patch16_224"),
        "a missing weights file": ({"timm": "resnet18", "weights": str(tmp_path / "nope.safetensors"),
                                    "kwargs": RESNET18}, "nope.safetensors does not exist"),
    }
    for what, (base, expected) in cases.items():
        (tmp_path / "cfg.yaml").write_text(yaml.safe_dump({"base": base, "dataset": data, "space": "timm_resnet.yaml",
                                                           "tracking": {"enabled": False}}))
        code = main(["run", str(tmp_path / "cfg.yaml"), "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err.strip()
        assert code == 2 and expected in err and len(err.splitlines()) == 1, (what, err)
        assert "Traceback" not in err and not (tmp_path / "out").exists(), what
