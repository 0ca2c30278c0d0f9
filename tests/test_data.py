import numpy as np
import pytest
import torch

from growsearch.data import load_dataset
from growsearch.errors import ConfigError


def test_builtin_datasets_are_offline_and_deterministic():
    a, b = load_dataset("mnist1d"), load_dataset("mnist1d")
    assert a.x_train.shape == (4000, 40) and a.x_test.shape == (1000, 40)
    assert torch.equal(a.x_train, b.x_train)
    digits = load_dataset("digits")
    assert digits.x_train.shape[1:] == (8, 8) and len(digits.x_train) + len(digits.x_test) == 1797
    text = load_dataset("text")
    assert text.kind == "lm" and text.x_train.shape[1] == 64
    assert torch.equal(text.x_train[0, 1:], text.y_train[0, :-1])  # targets are the next chars


def test_probe_comes_from_training_split():
    task = load_dataset("digits")
    x, _y = task.probe(100, seed=1)
    rows = {tuple(r.flatten().tolist()) for r in task.x_train}
    assert all(tuple(r.flatten().tolist()) in rows for r in x)
    assert torch.equal(task.probe(100, seed=1)[0], x)


def test_user_npz(tmp_path):
    path = tmp_path / "d.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.normal(size=(20, 5)), y_train=rng.integers(0, 3, 20),
             x_test=rng.normal(size=(6, 5)), y_test=rng.integers(0, 3, 6))
    task = load_dataset(str(path))
    assert task.num_classes == 3 and task.input_shape == (5,)


@pytest.mark.parametrize("arrays, message", [
    ({"x_train": np.zeros((4, 2)), "y_train": np.zeros(3, int), "x_test": np.zeros((2, 2)),
      "y_test": np.zeros(2, int)}, "x_train has 4 rows but y_train has 3"),
    ({"x_train": np.zeros((4, 2)), "y_train": np.zeros(4, int), "x_test": np.zeros((2, 3)),
      "y_test": np.zeros(2, int)}, "x_test rows have shape (3,)"),
    ({"x_train": np.zeros((4, 2)), "y_train": np.array([0, 1, 2, -1]), "x_test": np.zeros((2, 2)),
      "y_test": np.zeros(2, int)}, "y_train has labels in -1..2"),
    ({"x_train": np.zeros((4, 2)), "y_train": np.zeros(4, int), "x_test": np.zeros((2, 2)),
      "y_test": np.array([0, 7]), "num_classes": 3}, "y_test has labels in 0..7; allowed: 0..2"),
    ({"x_train": np.zeros((4, 2))}, "missing array 'y_train'"),
])
def test_bad_user_data(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ConfigError) as err:
        load_dataset(str(path))
    assert message in str(err.value)


def test_unknown_dataset():
    with pytest.raises(ConfigError, match="dataset: got 'imagenet'; allowed: mnist1d, digits, text"):
        load_dataset("imagenet")
