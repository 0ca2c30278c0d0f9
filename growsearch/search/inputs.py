"""What a search started from, recorded so that a resumed search cannot silently drift.

``inputs.json`` in the results folder holds the SHA-256 of the search space file and of
the base checkpoint's files (``spec.json`` and the weights), and the name of the search's
Optuna study. A resume recomputes the hashes and refuses, in one line, a space or base
that changed since the search started (one plan, two parameter counts in one
leaderboard). The study is named after the search plus a random suffix chosen once, so
that two searches sharing one ``storage:`` never share a study.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

from growsearch.checkpoint import write_json
from growsearch.errors import ConfigError
from growsearch.results import read_json

FILE = "inputs.json"
LEGACY_STUDY = "growsearch"  # the fixed name of searches started before inputs.json


def _sha256(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def fingerprint(space_path: str | None, space_data: Any, checkpoint: str | None) -> dict[str, str]:
    """Content hashes of the space (its file, or its dict) and of a checkpoint base."""
    if space_path is not None:
        space = _sha256([Path(space_path)])
    else:
        space = hashlib.sha256(json.dumps(space_data, sort_keys=True, default=str).encode()).hexdigest()
    hashes = {"space_sha256": space}
    if checkpoint is not None:
        directory = Path(checkpoint)
        files = [directory / name for name in ("spec.json", "model.safetensors", "model.pt")
                 if (directory / name).exists()]
        hashes["base_sha256"] = _sha256(files)
    return hashes


def check_inputs(out: Path, current: dict[str, str], name: str) -> dict[str, Any]:
    """The record to keep for this search: the saved one when resuming (after refusing a
    changed space or base), else a new one with a fresh study name."""
    path = out / FILE
    if not path.exists():
        if (out / "config.yaml").exists():  # a search started before inputs.json: adopt what is there now
            return {**current, "study": LEGACY_STUDY}
        return {**current, "study": f"{name or 'growsearch'}-{uuid.uuid4().hex[:8]}"}
    saved = read_json(path)
    if not isinstance(saved, dict):
        raise ConfigError(f"results: {path} is damaged (not a mapping); restore it")
    what = {"space_sha256": "the search space file", "base_sha256": "the base checkpoint"}
    for key, label in what.items():
        if key in saved and saved.get(key) != current.get(key):
            raise ConfigError(f"--resume: {label} changed since the search in {out} started (sha256 "
                              f"{str(saved[key])[:12]}... then, {str(current.get(key))[:12]}... now); restore it, "
                              "or start a new search in another folder")
    return {**current, **saved}


def study_name(out: str | Path) -> str:
    """The Optuna study name of the search in results folder ``out``."""
    path = Path(out) / FILE
    return str(read_json(path).get("study", LEGACY_STUDY)) if path.exists() else LEGACY_STUDY


def save_inputs(out: Path, record: dict[str, Any]) -> None:
    if not (out / FILE).exists():
        write_json(out / FILE, record)
