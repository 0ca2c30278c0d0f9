"""The bad-input corpus (tests/bad_inputs/): every case is one clear line and exit code 2,
no traceback, and nothing is written to the results folder or to MLflow."""

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from growsearch.checkpoint import save_checkpoint
from growsearch.cli import main
from growsearch.models import build

CORPUS = Path(__file__).parent / "bad_inputs"
MLP = {"family": "mlp", "in_dim": 40, "out_dim": 10, "hidden": [32, 32], "residual": [False, False],
       "activation": "relu", "layernorm": False}


class _Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['GS_PWNED']}",))


@pytest.fixture()
def env(tmp_path, monkeypatch):
    """Checkpoints and data files the cases refer to."""
    monkeypatch.setenv("GS_PWNED", str(tmp_path / "pwned"))
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    good = tmp_path / "good"
    save_checkpoint(good, build(MLP), MLP, {"dataset": "mnist1d"})
    trunc = tmp_path / "truncated"
    save_checkpoint(trunc, build(MLP), MLP, {"dataset": "mnist1d"})
    data = (trunc / "model.safetensors").read_bytes()
    (trunc / "model.safetensors").write_bytes(data[: len(data) // 3])
    cnn_spec = {"family": "cnn", "in_channels": 1, "num_classes": 10, "channels": [4], "blocks": [1]}
    cnn = tmp_path / "cnn"
    save_checkpoint(cnn, build(cnn_spec), cnn_spec, {"dataset": "mnist1d"})
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "spec.json").write_text(json.dumps(MLP))
    torch.save({"layers.0.fc.weight": _Exploit()}, pickled / "model.pt")
    heads = tmp_path / "heads"
    heads.mkdir()
    (heads / "spec.json").write_text(json.dumps({"family": "gpt", "vocab_size": 10, "block_size": 8,
                                                 "d_model": 32, "n_heads": 3}))
    nodata = tmp_path / "nodata"
    save_checkpoint(nodata, build(MLP), MLP, {})
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "shapes.npz", x_train=rng.normal(size=(4, 3)), y_train=np.zeros(3, int),
             x_test=rng.normal(size=(2, 3)), y_test=np.zeros(2, int))
    np.savez(tmp_path / "labels.npz", x_train=rng.normal(size=(4, 3)), y_train=np.array([0, 1, 2, 1]),
             x_test=rng.normal(size=(2, 3)), y_test=np.array([0, 7]), num_classes=3)
    for name in ("space_empty_range", "space_unknown_knob"):
        (tmp_path / f"cfg_{name}.yaml").write_text(
            (CORPUS / "config_with_space.tmpl").read_text().replace("SPACE", str(CORPUS / f"{name}.yaml")))
    (tmp_path / "cfg_truncated_base.yaml").write_text(
        f"base: {{checkpoint: {trunc}}}\nspace: mlp.yaml\ntracking: {{enabled: false}}\n")
    (tmp_path / "cfg_other_family.yaml").write_text(
        f"base: {{checkpoint: {cnn}}}\nspace: mlp.yaml\ntracking: {{enabled: false}}\n")
    return tmp_path


CASES = [
    # (argv, expected substring)
    (["run", "{c}/malformed.yaml", "--out", "{t}/out"], "is not valid YAML at line 2, column 1"),
    (["run", "{c}/unknown_key.yaml", "--out", "{t}/out"], "config.candidatez: unknown key"),
    (["run", "{c}/wrong_type.yaml", "--out", "{t}/out"], "config.candidates: got 'twelve'; allowed: int"),
    (["run", "{c}/zero_budget.yaml", "--out", "{t}/out"], "recipe.epochs: got 0; allowed: a positive integer"),
    (["run", "{c}/negative_candidates.yaml", "--out", "{t}/out"], "candidates: got -4; allowed: a positive integer"),
    (["run", "{c}/promotion_too_large.yaml", "--out", "{t}/out"], "promotion.k: got 9; allowed: 1..4"),
    (["run", "{t}/cfg_space_empty_range.yaml", "--out", "{t}/out"], "knobs.width: empty range 3.0..1.5"),
    (["run", "{t}/cfg_space_unknown_knob.yaml", "--out", "{t}/out"], "knobs.wideness: unknown knob; allowed:"),
    (["run", "{c}/space_family_mismatch.yaml", "--out", "{t}/out"],
     "gpt.yaml is for gpt models; the base model is mlp"),
    (["run", "{t}/cfg_other_family.yaml", "--out", "{t}/out"], "mlp.yaml is for mlp models; the base model is cnn"),
    (["run", "{c}/unknown_dataset.yaml", "--out", "{t}/out"], "dataset: got 'imagenet'; allowed: mnist1d"),
    (["run", "{t}/cfg_truncated_base.yaml", "--out", "{t}/out"], "is corrupted or truncated"),
    (["run", "{c}/unreachable_ray.yaml", "--out", "{t}/out"], "executor.address: cannot reach a Ray cluster"),
    (["run", "{c}/unreachable_tracking.yaml", "--out", "{t}/out"], "tracking.uri: cannot reach the MLflow"),
    (["run", "{t}/missing.yaml", "--out", "{t}/out"], "config: file"),
    (["grow", "{t}/good", "--plan", "{c}/plan_shrinks.yaml"], "plan.widths[0]: got 16, smaller than the current 32"),
    (["grow", "{t}/good", "--plan", "{c}/plan_position.yaml"], "plan.insert_at[0]: got 9; allowed: a layer position"),
    (["grow", "{t}/good", "--width", "0.5"], "plan.width: got 0.5; allowed: >= 1"),
    (["grow", "{t}/heads", "--width", "2"], "spec.n_heads: 3 does not divide d_model=32"),
    (["grow", "{t}/missing-checkpoint", "--width", "2"], "does not exist or is not a directory"),
    (["grow", "{t}/truncated", "--width", "2"], "is corrupted or truncated"),
    (["grow", "{t}/pickled", "--width", "2"], "never unpickles code"),
    (["grow", "{t}/good", "--init", "lemon"], "argument --init: invalid choice: 'lemon'"),
    (["score", "{t}/nodata", "--width", "2"], "names no dataset"),
    (["pretrain", "--family", "mlp", "--dataset", "{t}/shapes.npz", "--out", "{t}/out"],
     "x_train has 4 rows but y_train has 3"),
    (["pretrain", "--family", "mlp", "--dataset", "{t}/labels.npz", "--out", "{t}/out"],
     "y_test has labels in 0..7; allowed: 0..2"),
    (["pretrain", "--family", "mlp", "--dataset", "imagenet", "--out", "{t}/out"], "dataset: got 'imagenet'"),
    (["pretrain", "--family", "rnn", "--out", "{t}/out"], "argument --family: invalid choice: 'rnn'"),
    (["bench", "predictors", "--pool", "imagenet", "--out", "{t}/x.json"], "--pool: got 'imagenet'"),
    (["bench", "search", "--seeds", "0", "-1", "--out", "{t}/out/x.json"],
     "--seeds: got [0, -1]; allowed: non-negative"),
    (["report", "{t}/nothing-here"], "holds no growsearch search results"),
]


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 20


@pytest.mark.parametrize("argv, expected", CASES, ids=[re.sub(r"\W+", "-", c[1])[:40] for c in CASES])
def test_bad_input(env, capsys, argv, expected):
    args = [a.format(c=CORPUS, t=env) for a in argv]
    code = main(args)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert expected in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    out = env / "out"
    assert not out.exists() or not any(out.iterdir()), list(out.iterdir())  # nothing written, MLflow included
    assert not (env / "pwned").exists()  # the pickle's code never ran


def test_debug_shows_the_traceback(env):
    with pytest.raises(Exception, match=r"plan\.width: got 0\.5"):
        main(["--debug", "grow", str(env / "good"), "--width", "0.5"])
