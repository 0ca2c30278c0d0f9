"""The bad-input corpus (tests/bad_inputs/): every case is one clear line and exit code 2,
no traceback, nothing written (to the results folder, MLflow, or anywhere in the test's
folder), and bounded: each case runs under a 1 GiB cap on new heap memory (RLIMIT_DATA),
its peak resident memory grows by less than 1 GiB and it takes less than 5 s of CPU time
(wall time on a shared machine measures the neighbours)."""

import json
import os
import re
import resource
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from growsearch.checkpoint import save_checkpoint
from growsearch.cli import main
from growsearch.models import build
from growsearch.search import load_config

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
    nan = tmp_path / "nanweights"
    model = build(MLP)
    with torch.no_grad():
        model.layers[0].fc.weight[0, 0] = float("nan")
    save_checkpoint(nan, model, MLP, {"dataset": "mnist1d"})
    huge = tmp_path / "huge-spec"
    huge.mkdir()
    (huge / "spec.json").write_text(json.dumps({**MLP, "hidden": [200_000, 200_000]}))
    deep = tmp_path / "deep-spec"
    deep.mkdir()
    (deep / "spec.json").write_text(json.dumps({"family": "gpt", "vocab_size": 10, "block_size": 8,
                                                "n_layers": 100_000_000}))
    (tmp_path / "afile").write_text("not a folder\n")
    (tmp_path / "big.yaml").write_text("base: {pretrain: {family: mlp}}\nspace: mlp.yaml\n" + "#" * (2 << 20))
    for name in ("space_empty_range", "space_unknown_knob", "space_max_params_nan", "space_log_step",
                 "space_log_word", "space_bad_choice", "space_low_nan", "space_alias_bomb"):
        (tmp_path / f"cfg_{name}.yaml").write_text(
            (CORPUS / "config_with_space.tmpl").read_text().replace("SPACE", str(CORPUS / f"{name}.yaml")))
    (tmp_path / "cfg_truncated_base.yaml").write_text(
        f"base: {{checkpoint: {trunc}}}\nspace: mlp.yaml\ntracking: {{enabled: false}}\n")
    (tmp_path / "cfg_other_family.yaml").write_text(
        f"base: {{checkpoint: {cnn}}}\nspace: mlp.yaml\ntracking: {{enabled: false}}\n")
    (tmp_path / "cfg_nan_base.yaml").write_text(
        f"base: {{checkpoint: {nan}}}\nspace: mlp.yaml\ntracking: {{enabled: false}}\n")
    (tmp_path / "cfg_input_mismatch.yaml").write_text(
        f"base: {{checkpoint: {good}}}\nspace: mlp.yaml\ndataset: digits\ntracking: {{enabled: false}}\n")
    (tmp_path / "cfg_space_not_utf8.yaml").write_text(
        f"base: {{pretrain: {{family: mlp}}}}\nspace: {CORPUS / 'plan_not_utf8.yaml'}\n")
    # a results folder whose candidate record was truncated (a partial copy, a full disk)
    done_cfg = {"base": {"pretrain": {"family": "mlp", "epochs": 1}}, "space": "mlp.yaml", "candidates": 2,
                "promotion": {"k": 1}, "executor": {"name": "local"}, "tracking": {"enabled": False}}
    (tmp_path / "cfg_done.yaml").write_text(yaml.safe_dump(done_cfg))
    done = tmp_path / "done"
    (done / "candidates").mkdir(parents=True)
    (done / "config.yaml").write_text(yaml.safe_dump(json.loads(json.dumps(load_config(done_cfg).to_dict()))))
    (done / "candidates" / "c0000.json").write_text('{"id": "c0000", "stage": "scre')
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
    # non-finite numbers: each would silently switch a check off
    (["run", "{c}/lr_inf.yaml", "--out", "{t}/out"], "config.training.lr: got inf; allowed: a finite number"),
    (["run", "{c}/epsilon_nan.yaml", "--out", "{t}/out"], "config.manifold.epsilon: got nan; allowed: a finite"),
    (["run", "{c}/cpus_nan.yaml", "--out", "{t}/out"], "executor.cpus_per_trial: got nan"),
    (["run", "{c}/fraction_nan.yaml", "--out", "{t}/out"], "promotion.fraction: got nan"),
    (["run", "{t}/cfg_space_max_params_nan.yaml", "--out", "{t}/out"], "constraints.max_params: got nan"),
    (["run", "{t}/cfg_space_low_nan.yaml", "--out", "{t}/out"], "knobs.width.low: got nan; allowed: a finite"),
    (["grow", "{t}/good", "--width", "nan"], "argument --width: got 'nan'; allowed: a finite number"),
    (["grow", "{t}/good", "--width", "inf"], "argument --width: got 'inf'; allowed: a finite number"),
    (["grow", "{t}/good", "--width", "1e300"], "plan.width: makes hidden.0 3.2e+301 units wide; allowed: at most"),
    (["grow", "{t}/good", "--plan", "{c}/plan_width_inf.yaml"], "plan.width: got inf; allowed: a finite number"),
    (["score", "{t}/good", "--width", "2", "--manifold", "{c}/manifold_nan.yaml"], "epsilon: got nan"),
    (["grow", "{t}/nanweights", "--width", "2"], "holds NaN or Inf values; allowed: finite weights"),
    (["run", "{t}/cfg_nan_base.yaml", "--out", "{t}/out"], "holds NaN or Inf values"),
    # the memory guard: estimated on the meta device, refused before allocating
    (["grow", "{t}/good", "--width", "1000"], "plan: the model needs about 16.4 GB"),
    (["--memory-limit", "2GB", "grow", "{t}/good", "--width", "400"], "allowed: at most 2 GB"),
    (["grow", "{t}/good", "--depth", "100000000"], "plan.depth: got 100000000; allowed: 0..1000"),
    (["grow", "{t}/good", "--plan", "{c}/plan_depth_huge.yaml"], "plan.depth: got 100000000; allowed: 0..1000"),
    (["grow", "{t}/huge-spec", "--width", "2"], "spec.json: the model needs about 640 GB"),
    (["grow", "{t}/deep-spec", "--width", "2"], "spec.json: 100000000 layers/blocks; allowed: at most 1000"),
    (["--memory-limit", "lots", "grow", "{t}/good", "--width", "2"], "--memory-limit: got 'lots'"),
    # everything validated before anything is written
    (["run", "{c}/pretrain_epochs_zero.yaml", "--out", "{t}/out"], "base.pretrain.epochs: got 0"),
    (["run", "{c}/family_cannot_model.yaml", "--out", "{t}/out"], "family: gpt needs a text dataset"),
    (["run", "{c}/sampler_seed_negative.yaml", "--out", "{t}/out"], "sampler.seed: got -1; allowed: 0.."),
    (["run", "{c}/seed_too_large.yaml", "--out", "{t}/out"], "seed: got 1099511627776; allowed: 0..4294967295"),
    (["run", "{c}/candidates_huge.yaml", "--out", "{t}/out"], "candidates: got 100000000; allowed: at most"),
    (["run", "{t}/cfg_space_log_step.yaml", "--out", "{t}/out"], "`step` is not supported when `log` is true"),
    (["run", "{t}/cfg_space_log_word.yaml", "--out", "{t}/out"], "knobs.width.log: got 'maybe'; allowed: true"),
    (["run", "{t}/cfg_space_bad_choice.yaml", "--out", "{t}/out"], "knobs.depth.choices[1]: got 'two'"),
    (["run", "{t}/cfg_input_mismatch.yaml", "--out", "{t}/out"], "dataset: digits inputs of shape (8, 8) do not fit"),
    (["run", "{c}/dataset_beside_pretrain.yaml", "--out", "{t}/out"],
     "dataset: got 'digits' but base.pretrain.dataset is 'mnist1d'"),
    (["run", "{c}/gpu_that_does_not_exist.yaml", "--out", "{t}/out"],
     "executor.gpus_per_trial: got 0.5; this machine offers at most 0 GPUs"),
    (["run", "{c}/cpus_that_do_not_exist.yaml", "--out", "{t}/out"], "executor.cpus_per_trial: got 4096"),
    # files that are not what they claim: encodings, nesting, aliases, size, truncation, kind
    (["run", "{c}/not_utf8.yaml", "--out", "{t}/out"], "not_utf8.yaml is not UTF-8 text (byte 57)"),
    (["grow", "{t}/good", "--plan", "{c}/plan_not_utf8.yaml"], "plan_not_utf8.yaml is not UTF-8 text"),
    (["run", "{t}/cfg_space_not_utf8.yaml", "--out", "{t}/out"], "space: "),
    (["run", "{c}/nested_deep.yaml", "--out", "{t}/out"], "nested more than 50 levels deep"),
    (["run", "{c}/nested_deep_block.yaml", "--out", "{t}/out"], "nested more than 50 levels deep"),
    (["run", "{c}/alias_bomb.yaml", "--out", "{t}/out"], "line 2: YAML aliases (*name) are not allowed"),
    (["run", "{t}/cfg_space_alias_bomb.yaml", "--out", "{t}/out"], "YAML aliases (*name) are not allowed"),
    (["run", "{t}/big.yaml", "--out", "{t}/out"], "allowed: at most 1048576"),
    (["run", "{c}/top_level_list.yaml", "--out", "{t}/out"], "config: got list; allowed: a mapping"),
    (["run", "{t}/good", "--out", "{t}/out"], "(it is a directory)"),
    (["run", "{t}/cfg_done.yaml", "--out", "{t}/done", "--resume"], "c0000.json is damaged (JSONDecodeError"),
    (["report", "{t}/done"], "c0000.json is damaged"),
    (["report", "{t}/afile"], "report: {t}/afile is a file"),
    (["run", "{c}/unknown_key.yaml", "--out", "{t}/afile"], "config.candidatez"),
    (["run", "{t}/cfg_done.yaml", "--out", "{t}/afile"], "--out: {t}/afile is a file"),
    (["grow", "{t}/good", "--width", "2", "--out", "{t}/good"], "is the input checkpoint"),
    (["grow", "{t}/good", "--width", "2", "--out", "{t}/afile"], "--out: {t}/afile is a file"),
    (["pretrain", "--family", "mlp", "--out", "{t}/afile"], "--out: {t}/afile is a file"),
]


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 60


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def _status(key: str) -> int:
    """A ``/proc/self/status`` figure in bytes (VmData, VmHWM, VmRSS)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


GIB = 1 << 30


def _cpu_seconds() -> float:
    """CPU time of this process: on a shared machine wall time measures the neighbours."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@pytest.fixture(scope="module", autouse=True)
def _libraries_loaded():
    """Import once what some cases reach (MLflow, Ray): the bounds are for the cases, not imports."""
    import mlflow  # noqa: F401
    import ray  # noqa: F401


@pytest.mark.parametrize("argv, expected", CASES, ids=[re.sub(r"\W+", "-", c[1])[:40] for c in CASES])
def test_bad_input(env, capsys, monkeypatch, argv, expected):
    monkeypatch.delenv("GROWSEARCH_MEMORY_LIMIT", raising=False)
    monkeypatch.setenv("GROWSEARCH_MEMORY_LIMIT", "12GB")  # what half of a 24 GiB machine allows, everywhere
    args = [a.format(c=CORPUS, t=env) for a in argv]
    before = _tree(env)
    # bounded: at most 1 GiB of new heap (a runaway allocation fails here instead of swapping the machine)
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    cap = _status("VmData") + GIB
    resource.setrlimit(resource.RLIMIT_DATA, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard))
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak resident size (VmHWM)
    rss, start = _status("VmRSS"), _cpu_seconds()
    try:
        code = main(args)
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))
    seconds, peak = _cpu_seconds() - start, _status("VmHWM") - rss
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert expected.format(t=env) in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert len(err) < 600, err  # a huge value is never echoed
    assert _tree(env) == before  # nothing written anywhere, results folder and MLflow included
    assert not (env / "pwned").exists()  # the pickle's code never ran
    assert peak < GIB, f"peak resident memory grew by {peak / GIB:.2f} GiB"
    assert seconds < 5, f"took {seconds:.1f} s of CPU time"


def test_debug_shows_the_traceback(env):
    with pytest.raises(Exception, match=r"plan\.width: got 0\.5"):
        main(["--debug", "grow", str(env / "good"), "--width", "0.5"])
