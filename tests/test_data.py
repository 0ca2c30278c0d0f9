import numpy as np
import pytest
import torch

from growsearch.data import load_dataset
from growsearch.errors import ConfigError


def test_builtin_datasets_are_offline_and_deterministic():
    a, b = load_dataset("mnist1d"), load_dataset("mnist1d")
    # MNIST-1D's 4000 training examples: 3600 train + 400 held out for validation
    assert a.x_train.shape == (3600, 40) and a.x_val.shape == (400, 40) and a.x_test.shape == (1000, 40)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.x_val, b.x_val)
    digits = load_dataset("digits")
    assert digits.x_train.shape[1:] == (8, 8)
    assert len(digits.x_train) + len(digits.x_val) + len(digits.x_test) == 1797
    text = load_dataset("text")
    assert text.kind == "lm" and text.x_train.shape[1] == 64
    assert torch.equal(text.x_train[0, 1:], text.y_train[0, :-1])  # targets are the next chars


def test_validation_split_is_seeded_and_disjoint_from_train():
    task, again, other = load_dataset("digits"), load_dataset("digits"), load_dataset("digits", val_seed=1)
    assert torch.equal(task.x_val, again.x_val) and not torch.equal(task.x_val, other.x_val)
    train_rows = {tuple(r.flatten().tolist()) for r in task.x_train}
    val_rows = [tuple(r.flatten().tolist()) for r in task.x_val]
    # digits has a few duplicate images; almost none of the val rows may appear in train
    assert sum(r in train_rows for r in val_rows) <= 2
    assert len(task.x_val) == round(0.1 * (len(task.x_train) + len(task.x_val)))


def test_user_file_may_bring_its_own_validation_split(tmp_path):
    rng = np.random.default_rng(0)
    arrays = dict(x_train=rng.normal(size=(20, 5)), y_train=rng.integers(0, 3, 20), x_val=rng.normal(size=(4, 5)),
                  y_val=rng.integers(0, 3, 4), x_test=rng.normal(size=(6, 5)), y_test=rng.integers(0, 3, 6))
    np.savez(tmp_path / "own.npz", **arrays)
    task = load_dataset(str(tmp_path / "own.npz"))
    assert len(task.x_train) == 20 and np.allclose(task.x_val.numpy(), arrays["x_val"])
    del arrays["y_val"]
    np.savez(tmp_path / "half.npz", **arrays)
    with pytest.raises(ConfigError, match="only one of x_val, y_val"):
        load_dataset(str(tmp_path / "half.npz"))


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
    assert (len(task.x_train), len(task.x_val)) == (18, 2)


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
