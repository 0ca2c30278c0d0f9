"""One way to load data: every dataset becomes a :class:`Task` of in-memory tensors.

Built-in datasets are generated or shipped offline -- nothing is downloaded:

* ``mnist1d``: MNIST-1D (Greydanus 2020), made by the ``mnist1d`` package's own
  generator (``make_dataset``) with its default arguments (4000 train / 1000 test, 40 steps).
* ``digits``: scikit-learn's 8x8 handwritten digits (1797 images), scaled to [0, 1],
  fixed 80/20 split. Images keep their 8x8 shape; MLPs flatten them, CNNs add a channel.
* ``text``: a character-level corpus from Python's own documentation
  (``pydoc_data.topics``), fixed 90/10 split, windows of ``block_size`` characters.

Every task has three splits: ``train``, ``val`` -- a seeded 10% of the original training
data, held out for every decision a search or a benchmark makes -- and ``test``, for
final numbers only.

User data: a ``.pt`` (tensors only, loaded with ``weights_only=True``) or ``.npz`` file
with ``x_train``, ``y_train``, ``x_test``, ``y_test`` (and optionally ``x_val``, ``y_val``);
or an image folder (``train/`` and ``test/`` with one sub-folder per class) when
torchvision is installed. For Hugging Face models: text files, JSONL/CSV and ``datasets``
folders, tokenised with the model's own tokenizer (:mod:`growsearch.data.tokenized`).
"""

from __future__ import annotations

from growsearch.data.core import (
    DATASETS,
    VAL_FRACTION,
    Task,
    batches,
    check_dataset_name,
    hold_out_validation,
    load_dataset,
)

__all__ = ["DATASETS", "VAL_FRACTION", "Task", "batches", "check_dataset_name", "hold_out_validation",
           "load_dataset"]
