"""User text for Hugging Face models, tokenised with the model's own tokenizer.

A tokenised dataset is named by a reference that says everything a worker process needs
to rebuild it (``hf-data:{"path": ..., "tokenizer": ..., "block_size": ..., "task": ...}``,
made by :meth:`HFConfig.dataset_ref`), so it travels as a string like every dataset name.

* Causal LMs: a ``.txt`` file, a folder of ``.txt`` files, a ``.jsonl`` file with a ``text``
  field, a ``.csv`` with a ``text`` column, or a ``datasets`` dataset saved with
  ``save_to_disk`` (a ``text`` column). All text is joined, tokenised, and cut into blocks of
  ``block_size`` tokens (targets shifted by one); fixed 90/10 split.
* Encoders with a classification head: ``.jsonl``/``.csv``/``save_to_disk`` rows with
  ``text`` and an integer ``label`` in ``0..num_labels-1``; each text is truncated or
  padded (with the tokenizer's pad token) to ``block_size``; fixed seeded 80/20 split.

Every problem -- a missing file or field, an empty file, a label out of range, a model
directory without a tokenizer -- is one ConfigError naming the file, line and field.
"""

from __future__ import annotations

import csv
import functools
import json
from pathlib import Path
from typing import Any

import torch

from growsearch.data.core import Task
from growsearch.errors import ConfigError

TEXT_SUFFIXES = (".txt", ".jsonl", ".csv")


def is_user_text(name: str) -> bool:
    """A path that only a tokenised (hf) dataset can read."""
    path = Path(name)
    return name.endswith(TEXT_SUFFIXES) or (path.is_dir() and (
        any(path.glob("**/*.txt")) or (path / "dataset_info.json").is_file()))


def _tokenizer(directory: str | None):
    if not directory or not Path(directory).is_dir():
        raise ConfigError(f"dataset: the model directory {directory} has no tokenizer; allowed: a Hugging Face "
                          "directory saved with its tokenizer (tokenizer.json or vocab files)")
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(directory, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"dataset: the model directory {directory} has no usable tokenizer "
                          f"({str(exc).splitlines()[0][:120]})") from None


def _rows(path: Path, fields: tuple[str, ...]) -> list[dict[str, Any]]:
    """Records with ``fields`` from a .jsonl, .csv or save_to_disk dataset."""
    where = str(path)
    if path.is_dir():
        try:
            import datasets
        except ImportError:
            raise ConfigError(f"dataset: {where} is a datasets folder, which needs the datasets package") from None
        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            ds = datasets.concatenate_datasets([ds[k] for k in sorted(ds)])
        missing = [f for f in fields if f not in ds.column_names]
        if missing:
            raise ConfigError(f"dataset: {where} has no {missing[0]!r} column; columns: {', '.join(ds.column_names)}")
        rows = [dict(zip(fields, values, strict=True)) for values in zip(*(ds[f] for f in fields), strict=True)]
    elif path.suffix == ".jsonl":
        rows = []
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise ConfigError(f"dataset: {where} line {i} is not valid JSON") from None
            if not isinstance(row, dict):
                raise ConfigError(f"dataset: {where} line {i}: got {type(row).__name__}; allowed: a JSON object")
            for f in fields:
                if f not in row:
                    raise ConfigError(f"dataset: {where} line {i}: no {f!r} field; required: {', '.join(fields)}")
            rows.append({f: row[f] for f in fields})
    else:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = [f for f in fields if f not in (reader.fieldnames or [])]
            if missing:
                raise ConfigError(f"dataset: {where} has no {missing[0]!r} column; header: "
                                  f"{', '.join(reader.fieldnames or []) or '(none)'}")
            rows = [{f: row[f] for f in fields} for row in reader]
    if not rows:
        raise ConfigError(f"dataset: {where} is empty; allowed: at least one record")
    for i, row in enumerate(rows):
        if not isinstance(row["text"], str):
            raise ConfigError(f"dataset: {where} record {i + 1}: text is {type(row['text']).__name__}; "
                              "allowed: a string")
    return rows


def _corpus(path: Path) -> str:
    if path.is_file() and path.suffix == ".txt":
        text = path.read_text(encoding="utf-8")
    elif path.is_dir() and not (path / "dataset_info.json").is_file():
        text = "\n\n".join(p.read_text(encoding="utf-8") for p in sorted(path.glob("**/*.txt")))
    else:
        text = "\n\n".join(row["text"] for row in _rows(path, ("text",)))
    if not text.strip():
        raise ConfigError(f"dataset: {path} is empty; allowed: a file with text")
    return text


def _lm_task(ref: dict[str, Any], tokenizer: Any) -> Task:
    path, block = Path(ref["path"]), int(ref["block_size"])
    ids = torch.tensor(tokenizer(_corpus(path))["input_ids"], dtype=torch.long)
    n = (len(ids) - 1) // block
    if n < 2:
        raise ConfigError(f"dataset: {path} has {len(ids)} tokens; allowed: at least {2 * block + 1} "
                          f"(two blocks of block_size {block})")
    x, y = ids[: n * block].view(n, block), ids[1: n * block + 1].view(n, block)
    cut = max(1, min(n - 1, round(0.9 * n)))
    vocab = max(len(tokenizer), int(ids.max()) + 1)
    return Task(path.stem, "lm", x[:cut], y[:cut], x[cut:], y[cut:], vocab,
                {"path": str(path), "tokens": len(ids), "block_size": block})


def _classification_task(ref: dict[str, Any], tokenizer: Any) -> Task:
    path, block, num_labels = Path(ref["path"]), int(ref["block_size"]), int(ref.get("num_labels") or 2)
    rows = _rows(path, ("text", "label"))
    labels = []
    for i, row in enumerate(rows):
        label = row["label"]
        if isinstance(label, str) and label.strip().lstrip("-").isdigit():
            label = int(label)
        if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < num_labels:
            raise ConfigError(f"dataset: {path} record {i + 1}: label {row['label']!r} is out of range; "
                              f"allowed: an integer in 0..{num_labels - 1} (num_labels of the model)")
        labels.append(label)
    if len(rows) < 2:
        raise ConfigError(f"dataset: {path} has {len(rows)} record; allowed: at least 2 (train and test)")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    x = torch.full((len(rows), block), pad, dtype=torch.long)
    for i, row in enumerate(rows):
        ids = tokenizer(row["text"])["input_ids"][:block]
        x[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    y = torch.tensor(labels, dtype=torch.long)
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(0))
    cut = max(1, min(len(rows) - 1, round(0.8 * len(rows))))
    tr, te = order[:cut], order[cut:]
    return Task(path.stem, "classification", x[tr], y[tr], x[te], y[te], num_labels,
                {"path": str(path), "block_size": block})


@functools.lru_cache(maxsize=4)
def load_tokenized(ref_json: str) -> Task:
    """The task of a tokenised-dataset reference (the JSON after ``hf-data:``)."""
    ref = json.loads(ref_json)
    path = Path(ref["path"])
    if not path.exists():
        raise ConfigError(f"dataset: {path} does not exist")
    if path.is_file() and not path.name.endswith(TEXT_SUFFIXES):
        raise ConfigError(f"dataset: {path}: allowed for a Hugging Face model: .txt, .jsonl, .csv, "
                          "a folder of .txt files, or a datasets folder (save_to_disk)")
    tokenizer = _tokenizer(ref.get("tokenizer"))
    if ref["task"] == "causal_lm":
        return _lm_task(ref, tokenizer)
    return _classification_task(ref, tokenizer)
