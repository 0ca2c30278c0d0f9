"""What a search started from, recorded so that a resumed search cannot silently drift.

``inputs.json`` in the results folder holds the SHA-256 of the search space file and of
the base checkpoint's files (``spec.json`` and the weights), and the name of the search's
Optuna study. A resume recomputes the hashes and refuses, in one line, a space or base
that changed since the search started (one plan, two parameter counts in one
leaderboard). The study is named after the search plus a random suffix chosen once, so
that two searches sharing one ``storage:`` never share a study.

``seed_scheme`` says how the sampler's seed of each ask is derived from the configured
seed and the ask's number (:func:`growsearch.search.engine.ask_seed`): ``SEED_SCHEME``
for searches started by this version; a folder without it (started by an older version)
keeps ``LEGACY_SEED_SCHEME``, ``seed + number``, and so resumes with the proposals it
began with. It lives here, not in ``config.yaml``, which a resume compares key by key.
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
SEED_SCHEME = "seed_sequence"  # each ask's seed: numpy SeedSequence([seed, number])
LEGACY_SEED_SCHEME = "seed_plus_offset"  # seed + number: folders without a seed_scheme
SEED_SCHEMES = (SEED_SCHEME, LEGACY_SEED_SCHEME)


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
    started = (out / "config.yaml").exists()
    if not path.exists():
        if started:  # a search started before inputs.json: adopt what is there now (and its seeds)
            return {**current, "study": LEGACY_STUDY}
        return {**current, "study": f"{name or 'growsearch'}-{uuid.uuid4().hex[:8]}", "seed_scheme": SEED_SCHEME}
    saved = read_json(path)
    if not isinstance(saved, dict):
        raise ConfigError(f"results: {path} is damaged (not a mapping); restore it")
    if "seed_scheme" in saved and saved["seed_scheme"] not in SEED_SCHEMES:
        raise ConfigError(f"results: {path} seed_scheme: got {saved['seed_scheme']!r}; allowed: "
                          f"{', '.join(SEED_SCHEMES)} (a search started by a newer growsearch?)")
    if not started and "seed_scheme" not in saved:
        # left by a start that failed before config.yaml (nothing proposed yet): a new search's seeds
        saved = {**saved, "seed_scheme": SEED_SCHEME}
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


def seed_scheme(record: dict[str, Any]) -> str:
    """The seed scheme of a search's inputs record (``LEGACY_SEED_SCHEME`` when it has none)."""
    return str(record.get("seed_scheme", LEGACY_SEED_SCHEME))


def save_inputs(out: Path, record: dict[str, Any]) -> None:
    # rewritten until the search has started (config.yaml): a start that failed earlier may
    # have left one without the seed scheme this start chose
    if not (out / FILE).exists() or not (out / "config.yaml").exists():
        write_json(out / FILE, record)
