"""One way to save and load a model: safetensors weights + JSON architecture spec.

A checkpoint is a directory::

    model.safetensors   the state dict (no pickle at all)
    spec.json           the architecture spec (``family`` + config fields)
    meta.json           training metadata (dataset, metrics, how it was made)

``model.pt`` files (a plain state dict) are accepted for user checkpoints and read with
``torch.load(weights_only=True)``: a pickle that carries code is refused, never run.
Files are written to a temporary name and renamed, so a crash never leaves a
half-written checkpoint that a later run would trust.
"""

from __future__ import annotations

import copy
import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from growsearch.errors import CheckpointError, GrowsearchError
from growsearch.models import config_from_spec
from growsearch.models.memory import check_memory


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


UMASK = _umask()  # read once: os.umask can only be read by setting it, which is not thread-safe


def _temporary(directory: Path, name: str) -> tuple[int, str]:
    """A temporary file beside ``name`` with the permissions a plain ``open`` would give
    (``mkstemp`` makes it 0600: a shared results folder would be unreadable to the team)."""
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
    os.fchmod(fd, 0o666 & ~UMASK)
    return fd, tmp


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _temporary(path.parent, path.name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def save_state(state: dict[str, torch.Tensor], path: Path) -> None:
    """Write a state dict as safetensors through a temporary file and an atomic rename."""
    fd, tmp = _temporary(path.parent, path.name)
    os.close(fd)
    try:
        try:
            save_file(state, tmp, metadata={"format": "pt"})
        except SafetensorError as exc:  # its I/O errors (a full disk) are the environment's, as OSError
            raise OSError(f"{exc} (writing {path})") from None
        os.chmod(tmp, 0o666 & ~UMASK)  # safetensors writes a new file of its own
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_checkpoint(directory: str | Path, model: nn.Module, spec: dict[str, Any],
                    meta: dict[str, Any] | None = None) -> Path:
    """Save ``model`` with its ``spec`` (and ``meta``) into ``directory``.

    A masked growth is saved as the plain model its mask folds to now, where that fold keeps
    the function; an untrained one whose mask weights a LayerNorm/RMSNorm has no plain
    equivalent and is refused (PlanError, one line) before anything is written.
    """
    from growsearch.grow.mask import check_savable, fold_mask, growth_mask

    check_savable(model)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if growth_mask(model) is not None:  # folded at its current value (exact, or mid-ramp as training stops)
        model = copy.deepcopy(model)
        fold_mask(model)
    config_from_spec(spec).write_weights(model, directory)
    write_json(directory / "spec.json", spec)
    write_json(directory / "meta.json", meta or {})
    return directory


MAX_JSON_BYTES = 1 << 20  # a spec or meta file is a few hundred bytes


def _read_json(path: Path) -> Any:
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            raise CheckpointError(f"checkpoint: {path} has {path.stat().st_size} bytes; allowed: at most "
                                  f"{MAX_JSON_BYTES}")
        return json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise CheckpointError(f"checkpoint: {path} is not valid JSON ({type(exc).__name__})") from None


def _read_weights(directory: Path) -> dict[str, torch.Tensor]:
    st, pt = directory / "model.safetensors", directory / "model.pt"
    if st.exists() or pt.exists():
        return read_weights_file(st if st.exists() else pt)
    raise CheckpointError(f"checkpoint: {directory} has no model.safetensors or model.pt")


def read_weights_file(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from ``path``: safetensors (``.safetensors``) or a tensors-only pickle read
    with ``weights_only=True``; a missing, corrupted or code-carrying file is one CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint: {path} does not exist")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"checkpoint: {path} is corrupted or truncated ({exc})") from None
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"checkpoint: {path} holds Python objects besides tensors and was refused unread; "
            "growsearch never unpickles code (allowed: a state dict of tensors, or safetensors)"
        ) from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise CheckpointError(f"checkpoint: {path} is corrupted or truncated ({exc})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"checkpoint: {path} is not a state dict of tensors")
    return state


def load_checkpoint(directory: str | Path, device: str | torch.device = "cpu",
                    family: str | None = None) -> tuple[nn.Module, dict[str, Any], dict[str, Any]]:
    """Load ``(model, spec, meta)`` from a checkpoint directory.

    Raises :class:`CheckpointError` for a missing directory, a corrupted or unsafe file, a
    spec that does not match the weights, or (with ``family``) a model of another family.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint: {directory} does not exist or is not a directory")
    if not (directory / "spec.json").exists():
        raise CheckpointError(f"checkpoint: {directory} has no spec.json (the architecture spec)")
    spec = _read_json(directory / "spec.json")
    meta = _read_json(directory / "meta.json") if (directory / "meta.json").exists() else {}
    try:
        cfg = config_from_spec(spec)
    except GrowsearchError as exc:
        raise CheckpointError(f"checkpoint: {directory}/spec.json: {exc}") from None
    if family is not None and cfg.family != family:
        raise CheckpointError(f"checkpoint: {directory} holds a {cfg.family} model; expected {family}")
    check_memory(cfg, f"checkpoint: {directory}/spec.json", CheckpointError)  # before allocating anything
    state = cfg.state_from_file(_read_weights(directory))
    model = cfg.build()
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        key = (missing or unexpected)[0]
        what = "lacks" if missing else "has an unexpected"
        raise CheckpointError(f"checkpoint: weights do not match spec.json: the weights {what} "
                              f"tensor {key!r} ({len(missing)} missing, {len(unexpected)} unexpected)")
    for key, tensor in state.items():
        if tensor.shape != expected[key].shape:
            raise CheckpointError(f"checkpoint: weights do not match spec.json: {key!r} has shape "
                                  f"{tuple(tensor.shape)}, the spec needs {tuple(expected[key].shape)}")
    for key, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"checkpoint: {directory}: tensor {key!r} holds NaN or Inf values; "
                                  "allowed: finite weights")
    model.load_state_dict(state)
    return model.to(device), cfg.to_spec(), meta


def load_base_model(source: str, device: str | torch.device = "cpu") -> tuple[nn.Module, dict, dict]:
    """A base model from where users keep theirs: ``(model, spec, meta)``.

    ``source`` is a growsearch checkpoint directory or ``hf:PATH``, a local Hugging Face
    model directory loaded with transformers' own classes (no hub access), or ``timm:...`` /
    ``torchvision:...`` (:func:`growsearch.models.vision.load_vision_base`). These bases have
    no meta (no dataset): the caller names the data.
    """
    if source.startswith("hf:"):
        from growsearch.models.hf import load_hf_directory

        model, spec = load_hf_directory(source[3:])
        return model.to(device), spec, {}
    if source.startswith(("timm:", "torchvision:")):
        from growsearch.models.vision import load_vision_base

        model, spec = load_vision_base(source)
        return model.to(device), spec, {}
    return load_checkpoint(source, device)
