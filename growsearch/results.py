"""The results folder of one search: its layout and its candidate records.

Everything a search produces lives in one folder, written atomically::

    config.yaml          the resolved config (a resume must match it)
    study.journal        Optuna's study (JournalStorage): one trial per candidate
    base/                the base checkpoint, when the config pretrains one
    candidates/cNNNN.json  one record per candidate (screening, then training)
    candidates/cNNNN/    the trained model of each trained candidate
    promotion.json       which candidates the policy promoted
    leaderboard.csv/.md, plots/*.png, best/   the outputs
    mlflow.db, mlartifacts/   the default MLflow store (runs and artifacts)

This module sits below the search engine, the report and the tracker: all three read and
write the folder through :class:`SearchState`, none of them through each other.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from growsearch.checkpoint import write_json


class SearchState:
    """The results folder: records in, records out, each write atomic."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        self.cdir = self.out / "candidates"

    def record(self, cid: str) -> dict[str, Any] | None:
        """The record of candidate ``cid`` (``"base"``: the reference), or None."""
        path = self.cdir / f"{cid}.json"
        return json.loads(path.read_text()) if path.exists() else None

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
        return [json.loads(p.read_text()) for p in sorted(self.cdir.glob("c*.json"))]

    def holds_search(self) -> bool:
        """Whether the folder holds a search (its resolved config)."""
        return (self.out / "config.yaml").exists()
