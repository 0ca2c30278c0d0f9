"""Task container, the dataset registry and batching."""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from growsearch.errors import ConfigError

VAL_FRACTION = 0.1  # share of the training data held out as the validation split
VAL_SEED = 0  # seed of the permutation that picks the validation examples


@dataclass
class Task:
    """A dataset in memory: tensors on the CPU, moved to the device batch by batch.

    Three splits: ``train`` (fitting, and the probes of the surrogate and the proxies),
    ``val`` (every decision: early stopping, promotion of the best, gains; held out from
    the training data by :func:`load_dataset`) and ``test`` (final numbers only).
    """

    name: str
    kind: str  # "classification" or "lm" (next-token prediction)
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int  # classes, or vocabulary size for "lm"
    meta: dict[str, Any] = field(default_factory=dict)
    x_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` of the ``train``, ``val`` or ``test`` split."""
        if name not in ("train", "val", "test"):
            raise ValueError(f"split: got {name!r}; allowed: train, val, test")
        x, y = getattr(self, f"x_{name}"), getattr(self, f"y_{name}")
        if x is None:
            raise ValueError(f"task {self.name} has no {name} split; load it with load_dataset")
        return x, y

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def probe(self, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """A fixed random subset of the *training* split (for metrics and checks)."""
        gen = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(self.x_train), generator=gen)[: min(n, len(self.x_train))]
        return self.x_train[idx], self.y_train[idx]


def batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, *, shuffle: bool = False,
            generator: torch.Generator | None = None,
            device: torch.device | str = "cpu") -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Mini-batches of ``(x, y)`` on ``device``; shuffled with ``generator`` when asked."""
    n = len(x)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        yield x[idx].to(device, non_blocking=True), y[idx].to(device, non_blocking=True)


def cache_dir() -> Path:
    """Where generated datasets are cached (``GROWSEARCH_CACHE``, default ~/.cache/growsearch)."""
    return Path(os.environ.get("GROWSEARCH_CACHE", Path.home() / ".cache" / "growsearch"))


def _generate_mnist1d(seed: int) -> dict[str, np.ndarray]:
    """MNIST-1D from the package's generator, cached as .npz: generating takes ~2 s, and
    every Ray worker process would otherwise pay it again. The cache key holds the seed and
    the package version; the file is written atomically."""
    from importlib.metadata import version

    from mnist1d.data import get_dataset_args, make_dataset

    path = cache_dir() / f"mnist1d-{version('mnist1d')}-seed{seed}.npz"
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as f:
                return {k: f[k] for k in ("x", "y", "x_test", "y_test")}
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache file is regenerated
    args = get_dataset_args()
    args.seed = seed
    data = make_dataset(args)  # the generator; never the download path
    arrays = {k: np.asarray(data[k]) for k in ("x", "y", "x_test", "y_test")}
    try:
        import io

        from growsearch.checkpoint import atomic_write

        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        atomic_write(path, buffer.getvalue())
    except OSError:
        pass  # a read-only home: no cache, same data
    return arrays


@functools.lru_cache(maxsize=4)
def _mnist1d(seed: int) -> Task:
    data = _generate_mnist1d(seed)
    return Task(
        name="mnist1d", kind="classification",
        x_train=torch.tensor(data["x"], dtype=torch.float32),
        y_train=torch.tensor(data["y"], dtype=torch.long),
        x_test=torch.tensor(data["x_test"], dtype=torch.float32),
        y_test=torch.tensor(data["y_test"], dtype=torch.long),
        num_classes=10, meta={"generator_seed": seed},
    )


@functools.lru_cache(maxsize=4)
def _digits(seed: int) -> Task:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.tensor(bunch.images / 16.0, dtype=torch.float32)
    y = torch.tensor(bunch.target, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    cut = int(0.8 * len(x))
    tr, te = order[:cut], order[cut:]
    return Task("digits", "classification", x[tr], y[tr], x[te], y[te], 10, {"split_seed": seed})


def _text_corpus() -> str:
    import pydoc_data.topics as topics

    return "\n\n".join(topics.topics[k] for k in sorted(topics.topics))


@functools.lru_cache(maxsize=4)
def _text(block_size: int = 64, max_chars: int = 200_000) -> Task:
    corpus = _text_corpus()[:max_chars]
    vocab = sorted(set(corpus))
    index = {c: i for i, c in enumerate(vocab)}
    tokens = torch.tensor([index[c] for c in corpus], dtype=torch.long)
    cut = int(0.9 * len(tokens))

    def windows(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = (len(t) - 1) // block_size
        x = t[: n * block_size].view(n, block_size)
        y = t[1: n * block_size + 1].view(n, block_size)
        return x, y

    x_tr, y_tr = windows(tokens[:cut])
    x_te, y_te = windows(tokens[cut:])
    return Task("text", "lm", x_tr, y_tr, x_te, y_te, len(vocab),
                {"vocab": "".join(vocab), "block_size": block_size, "chars": len(corpus)})


def _check_user_arrays(arrays: dict[str, Any], path: str) -> Task:
    keys = ("x_train", "y_train", "x_test", "y_test")
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise ConfigError(f"data file {path}: missing array {missing[0]!r}; required: {', '.join(keys)}")
    if ("x_val" in arrays) != ("y_val" in arrays):
        raise ConfigError(f"data file {path}: has only one of x_val, y_val; allowed: both or neither "
                          f"(neither: {VAL_FRACTION:.0%} of the training data is held out)")
    splits = ("train", "val", "test") if "x_val" in arrays else ("train", "test")
    t = {f"{a}_{s}": torch.as_tensor(np.asarray(arrays[f"{a}_{s}"])) for s in splits for a in "xy"}
    for split in splits:
        x, y = t[f"x_{split}"], t[f"y_{split}"]
        if len(x) != len(y) or len(x) == 0:
            raise ConfigError(f"data file {path}: x_{split} has {len(x)} rows but y_{split} has "
                              f"{len(y)}; allowed: the same non-zero number")
        if y.dim() != 1 or y.dtype.is_floating_point:
            raise ConfigError(f"data file {path}: y_{split} must be a 1-D integer label array; "
                              f"got shape {tuple(y.shape)} dtype {y.dtype}")
    for split in splits[1:]:
        if t[f"x_{split}"].shape[1:] != t["x_train"].shape[1:]:
            raise ConfigError(f"data file {path}: x_{split} rows have shape {tuple(t[f'x_{split}'].shape[1:])}, "
                              f"x_train rows {tuple(t['x_train'].shape[1:])}; allowed: the same")
    num_classes = int(arrays.get("num_classes", int(t["y_train"].max()) + 1))
    for split in splits:
        y = t[f"y_{split}"]
        if int(y.min()) < 0 or int(y.max()) >= num_classes:
            raise ConfigError(f"data file {path}: y_{split} has labels in {int(y.min())}..{int(y.max())}; "
                              f"allowed: 0..{num_classes - 1}")
    val = {"x_val": t["x_val"].float(), "y_val": t["y_val"].long()} if "x_val" in t else {}
    return Task(Path(path).stem, "classification", t["x_train"].float(), t["y_train"].long(),
                t["x_test"].float(), t["y_test"].long(), num_classes, {"path": str(path)}, **val)


def _user_file(path: str) -> Task:
    if not os.path.exists(path):
        raise ConfigError(f"dataset: file {path} does not exist")
    try:
        if path.endswith(".npz"):
            with np.load(path, allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files}
        else:
            arrays = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(f"dataset: cannot read {path} as tensors only ({type(exc).__name__}); "
                          "allowed: .npz or a .pt dict of tensors") from None
    if not isinstance(arrays, dict):
        raise ConfigError(f"dataset: {path} holds a {type(arrays).__name__}; allowed: a dict of arrays")
    return _check_user_arrays(arrays, path)


def _image_folder(path: str, size: int = 32) -> Task:
    try:
        from torchvision import datasets, transforms
    except ImportError:
        raise ConfigError(f"dataset: {path} is a folder, which needs torchvision; "
                          "install it or give a .pt/.npz file") from None
    tf = transforms.Compose([transforms.Resize((size, size)), transforms.ToTensor()])
    splits = {}
    for split in ("train", "test"):
        folder = Path(path) / split
        if not folder.is_dir():
            raise ConfigError(f"dataset: {folder} is missing; allowed: a folder with train/ and test/")
        ds = datasets.ImageFolder(str(folder), transform=tf)
        xs, ys = zip(*[ds[i] for i in range(len(ds))], strict=False)
        splits[split] = (torch.stack(xs), torch.tensor(ys))
    return Task(Path(path).name, "classification", *splits["train"], *splits["test"],
                num_classes=len(ds.classes), meta={"path": str(path)})


DATASETS = ("mnist1d", "digits", "text")
TOKENIZED = "hf-data:"  # prefix of a tokenised user dataset (growsearch.data.tokenized)


def check_dataset_name(name: str) -> None:
    """Refuse an unknown dataset before anything is loaded, written or computed."""
    from growsearch.data.tokenized import TEXT_SUFFIXES

    if name.endswith(TEXT_SUFFIXES) and not os.path.exists(name):
        raise ConfigError(f"dataset: file {name} does not exist")
    if name.startswith(TOKENIZED) or (name.endswith(TEXT_SUFFIXES) and os.path.isfile(name)):
        return
    if name in DATASETS or (name.endswith((".pt", ".npz")) and os.path.isfile(name)) or os.path.isdir(name):
        return
    if name.endswith((".pt", ".npz")):
        raise ConfigError(f"dataset: file {name} does not exist")
    raise ConfigError(f"dataset: got {name!r}; allowed: {', '.join(DATASETS)}, a .pt/.npz file, or an image folder")


def hold_out_validation(task: Task, fraction: float = VAL_FRACTION, seed: int = VAL_SEED) -> Task:
    """``task`` with a seeded random ``fraction`` of its training examples moved to the
    validation split (unless the task brings its own validation split)."""
    if task.x_val is not None:
        return task
    n = len(task.x_train)
    n_val = max(1, round(fraction * n))
    if n - n_val < 1:
        raise ConfigError(f"dataset {task.name}: x_train has {n} rows; allowed: at least 2 "
                          f"({fraction:.0%} are held out for validation)")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val, train = order[:n_val].sort().values, order[n_val:].sort().values
    return dataclasses.replace(task, x_train=task.x_train[train], y_train=task.y_train[train],
                               x_val=task.x_train[val], y_val=task.y_train[val],
                               meta={**task.meta, "val_fraction": fraction, "val_seed": seed})


def _load_splits(name: str, seed: int | None, options: dict[str, Any]) -> Task:
    if name == "mnist1d":
        return _mnist1d(42 if seed is None else seed)
    if name == "digits":
        return _digits(0 if seed is None else seed)
    if name == "text":
        return _text(**options)
    if name.startswith(TOKENIZED):
        from growsearch.data.tokenized import load_tokenized

        return load_tokenized(name[len(TOKENIZED):])
    from growsearch.data.tokenized import is_user_text

    if is_user_text(name):
        raise ConfigError(f"dataset: {name} is text, which needs a tokenizer; allowed with an hf: base model "
                          "(its tokenizer reads it), or use the built-in 'text'")
    if name.endswith((".pt", ".npz")):
        return _user_file(name)
    if os.path.isdir(name):
        return _image_folder(name)
    raise ConfigError(f"dataset: got {name!r}; allowed: {', '.join(DATASETS)}, "
                      "a .pt/.npz file, or an image folder")


def load_dataset(name: str, seed: int | None = None, *, val_fraction: float = VAL_FRACTION,
                 val_seed: int = VAL_SEED, **options: Any) -> Task:
    """Load a built-in dataset by name, or user data from a file or folder path, with its
    train / val / test splits -- the one way every part of growsearch gets its data.

    ``seed`` changes MNIST-1D's generator seed (default: the package's 42) and the digits
    split (default 0). ``options`` go to the text corpus (``block_size``, ``max_chars``).
    The validation split is ``val_fraction`` of the original training data, chosen by
    ``val_seed`` (a user file may bring its own ``x_val``/``y_val``).
    """
    return hold_out_validation(_load_splits(name, seed, options), val_fraction, val_seed)
