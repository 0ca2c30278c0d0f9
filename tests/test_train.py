import math

import pytest
import torch

from growsearch.data import load_dataset
from growsearch.errors import TrainingError
from growsearch.models import build
from growsearch.train import StopTraining, TrainRecipe, evaluate, train

SPEC = {"family": "mlp", "in_dim": 64, "out_dim": 10, "hidden": [32]}


def fresh(seed=0):
    torch.manual_seed(seed)
    return build(SPEC)


def test_training_learns_digits():
    task = load_dataset("digits")
    model = fresh()
    before = evaluate(model, task.x_test, task.y_test)
    result = train(model, task, TrainRecipe(epochs=5, batch_size=64))
    assert result.final["test_accuracy"] > 0.85 > before["accuracy"]
    assert result.forward_backward == 5 * len(task.x_train)
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4, 5]


def test_same_seed_same_result():
    task = load_dataset("digits")
    a = train(fresh(), task, TrainRecipe(epochs=2), seed=7).final
    b = train(fresh(), task, TrainRecipe(epochs=2), seed=7).final
    assert a["test_loss"] == b["test_loss"]


def test_steps_budget_and_sgd():
    task = load_dataset("digits")
    result = train(fresh(), task, TrainRecipe(steps=5, batch_size=10, optimizer="sgd", lr=0.05))
    assert result.forward_backward == 50
    assert len(result.history) == 1 and "test_accuracy" in result.final


def test_callback_can_stop_training():
    task = load_dataset("digits")
    seen = []

    def stop_after_two(record):
        seen.append(record["epoch"])
        if record["epoch"] == 2:
            raise StopTraining

    result = train(fresh(), task, TrainRecipe(epochs=10), callbacks=[stop_after_two])
    assert seen == [1, 2] and result.stopped_early


def test_divergence_is_a_training_error():
    task = load_dataset("digits")
    model = fresh()
    with torch.no_grad():
        model.head.weight.fill_(math.inf)
    with pytest.raises(TrainingError, match="loss became"):
        train(model, task, TrainRecipe(epochs=1))


def test_language_model_loss_is_per_token():
    task = load_dataset("text")
    torch.manual_seed(0)
    model = build({"family": "gpt", "vocab_size": task.num_classes, "block_size": 64, "d_model": 16,
                   "n_layers": 1, "n_heads": 2})
    metrics = evaluate(model, task.x_test[:8], task.y_test[:8])
    # an untrained model with small init predicts nearly uniformly over the vocabulary
    assert abs(metrics["loss"] - math.log(task.num_classes)) < 0.1
