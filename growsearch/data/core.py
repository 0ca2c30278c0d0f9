"""Task container, the dataset registry and batching."""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from growsearch.errors import ConfigError


@dataclass
class Task:
    """A dataset in memory: tensors on the CPU, moved to the device batch by batch."""

    name: str
    kind: str  # "classification" or "lm" (next-token prediction)
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int  # classes, or vocabulary size for "lm"
    meta: dict[str, Any] = field(default_factory=dict)

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
    t = {k: torch.as_tensor(np.asarray(arrays[k])) for k in keys}
    for split in ("train", "test"):
        x, y = t[f"x_{split}"], t[f"y_{split}"]
        if len(x) != len(y) or len(x) == 0:
            raise ConfigError(f"data file {path}: x_{split} has {len(x)} rows but y_{split} has "
                              f"{len(y)}; allowed: the same non-zero number")
        if y.dim() != 1 or y.dtype.is_floating_point:
            raise ConfigError(f"data file {path}: y_{split} must be a 1-D integer label array; "
                              f"got shape {tuple(y.shape)} dtype {y.dtype}")
    if t["x_train"].shape[1:] != t["x_test"].shape[1:]:
        raise ConfigError(f"data file {path}: x_test rows have shape {tuple(t['x_test'].shape[1:])}, "
                          f"x_train rows {tuple(t['x_train'].shape[1:])}; allowed: the same")
    num_classes = int(arrays.get("num_classes", int(t["y_train"].max()) + 1))
    for split in ("train", "test"):
        y = t[f"y_{split}"]
        if int(y.min()) < 0 or int(y.max()) >= num_classes:
            raise ConfigError(f"data file {path}: y_{split} has labels in {int(y.min())}..{int(y.max())}; "
                              f"allowed: 0..{num_classes - 1}")
    return Task(Path(path).stem, "classification", t["x_train"].float(), t["y_train"].long(),
                t["x_test"].float(), t["y_test"].long(), num_classes, {"path": str(path)})


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


def load_dataset(name: str, seed: int | None = None, **options: Any) -> Task:
    """Load a built-in dataset by name, or user data from a file or folder path.

    ``seed`` changes MNIST-1D's generator seed (default: the package's 42) and the digits
    split (default 0). ``options`` go to the text corpus (``block_size``, ``max_chars``).
    """
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
