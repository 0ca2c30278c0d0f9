"""The results folder of one search: its layout and its candidate records.

Everything a search produces lives in one folder, written atomically::

    config.yaml          the resolved config (a resume must match it)
    study.journal        Optuna's study (JournalStorage): one trial per candidate
    base/                the base checkpoint, when the config pretrains one
    candidates/cNNNN.json  one record per candidate (screening, then training)
    candidates/cNNNN/    the trained model of each trained candidate
    promotion.json       which candidates the policy promoted (a search without a budget)
    budget.json          a budgeted search: budget, spent, brackets, the online surrogate tau
    leaderboard.csv/.md, plots/*.png, best/   the outputs
    mlflow.db, mlartifacts/   the default MLflow store (runs and artifacts)

This module sits below the search engine, the report and the tracker: all three read and
write the folder through :class:`SearchState`, none of them through each other.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from growsearch.checkpoint import write_json
from growsearch.errors import ConfigError


class SearchState:
    """The results folder: records in, records out, each write atomic."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        self.cdir = self.out / "candidates"

    def record(self, cid: str) -> dict[str, Any] | None:
        """The record of candidate ``cid`` (``"base"``: the reference), or None."""
        path = self.cdir / f"{cid}.json"
        return read_record(path) if path.exists() else None

    def save(self, record: dict[str, Any]) -> dict[str, Any]:
        """Write ``record`` (keyed by its ``id``) atomically and return it."""
        write_json(self.cdir / f"{record['id']}.json", record)
        return record

    def update(self, cid: str, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into the record of ``cid`` (created if missing)."""
        return self.save({**(self.record(cid) or {"id": cid}), **fields})

    def records(self) -> list[dict[str, Any]]:
        """Every candidate record, in id order (the reference excluded)."""
        if not self.cdir.exists():
            return []
        return [read_record(p) for p in sorted(self.cdir.glob("c*.json"))]

    def holds_search(self) -> bool:
        """Whether the folder holds a search (its resolved config)."""
        return (self.out / "config.yaml").exists()


def read_json(path: Path) -> Any:
    """A JSON file of the results folder; a damaged one is a one-line ConfigError (they are
    written atomically, so damage comes from outside: a partial copy, an edit, a full disk)."""
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ConfigError(f"results: {path} is damaged ({type(exc).__name__}: truncated or edited); restore it, "
                          "or delete it and --resume recomputes what it held") from None


def read_record(path: Path) -> dict[str, Any]:
    """One candidate record (see :func:`read_json`)."""
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("id"), str):
        raise ConfigError(f"results: {path} is not a growsearch record (no id); restore it or delete it")
    return data


def repair_journal(path: Path) -> str | None:
    """Drop a torn last line of Optuna's append-only journal (a process killed mid-append,
    a full disk): Optuna ignores it when reading but appends onto it, which corrupts the
    next operation. Returns a warning when something was dropped; a damaged line before
    the last is a ConfigError (the study cannot be trusted)."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    data = path.read_bytes()
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    dropped = len(tail)
    if not tail and lines:
        try:
            json.loads(lines[-1])
        except ValueError:
            dropped = len(lines.pop()) + 1
    for i, line in enumerate(lines):
        try:
            json.loads(line)
        except ValueError:
            raise ConfigError(f"results: {path} line {i + 1} is damaged; the study cannot be trusted (restore the "
                              "file, or start a new search)") from None
    if not dropped:
        return None
    os.truncate(path, len(data) - dropped)
    return f"dropped a torn last line ({dropped} bytes) of {path.name}: an operation interrupted while written"
