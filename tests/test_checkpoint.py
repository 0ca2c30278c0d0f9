import json
import os

import pytest
import torch

from growsearch.checkpoint import load_checkpoint, save_checkpoint
from growsearch.errors import CheckpointError
from growsearch.models import build

SPEC = {"family": "cnn", "in_channels": 1, "num_classes": 3, "channels": [4], "blocks": [1],
        "dims": 1, "length": 12, "kernel_size": 3}


def test_round_trip(tmp_path):
    model = build(SPEC)
    save_checkpoint(tmp_path / "ck", model, SPEC, {"note": "x"})
    loaded, spec, meta = load_checkpoint(tmp_path / "ck")
    assert spec == SPEC and meta == {"note": "x"}
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
    assert not list(tmp_path.glob("ck/.*tmp"))  # no temporary files left behind


def test_plain_pytorch_can_load_it(tmp_path):
    from safetensors.torch import load_file

    save_checkpoint(tmp_path, build(SPEC), SPEC)
    model = build(json.loads((tmp_path / "spec.json").read_text()))
    model.load_state_dict(load_file(tmp_path / "model.safetensors"))


def test_missing_and_truncated(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")
    save_checkpoint(tmp_path, build(SPEC), SPEC)
    data = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupted or truncated"):
        load_checkpoint(tmp_path)


def test_spec_weights_mismatch(tmp_path):
    save_checkpoint(tmp_path, build(SPEC), SPEC)
    (tmp_path / "spec.json").write_text(json.dumps({**SPEC, "channels": [8]}))
    with pytest.raises(CheckpointError, match=r"weights do not match spec\.json"):
        load_checkpoint(tmp_path)


def test_wrong_family(tmp_path):
    save_checkpoint(tmp_path, build(SPEC), SPEC)
    with pytest.raises(CheckpointError, match="holds a cnn model; expected mlp"):
        load_checkpoint(tmp_path, family="mlp")


class _Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['GS_PWNED']}",))


def test_pickle_with_code_is_refused_without_running_it(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("GS_PWNED", str(marker))
    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / "spec.json").write_text(json.dumps(SPEC))
    torch.save({"stem.conv.weight": _Exploit()}, ck / "model.pt")
    with pytest.raises(CheckpointError, match="never unpickles code"):
        load_checkpoint(ck)
    assert not marker.exists()


def test_plain_state_dict_pt_is_accepted(tmp_path):
    model = build(SPEC)
    (tmp_path / "spec.json").write_text(json.dumps(SPEC))
    torch.save(model.state_dict(), tmp_path / "model.pt")
    loaded, _, _ = load_checkpoint(tmp_path)
    assert torch.equal(loaded.stem.conv.weight, model.stem.conv.weight)
