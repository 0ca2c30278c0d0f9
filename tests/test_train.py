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


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_a_paused_training_resumes_bit_for_bit(tmp_path, optimizer):
    """Stopped after epoch 2, saved (weights + TrainState) and resumed: the same weights
    and history as an uninterrupted training (what synchronous successive halving needs)."""
    from growsearch.checkpoint import load_checkpoint, save_checkpoint
    from growsearch.train import TrainState

    task = load_dataset("digits")
    recipe = TrainRecipe(epochs=4, batch_size=64, optimizer=optimizer, warmup_steps=5)
    straight = fresh()
    whole = train(straight, task, recipe, seed=3)

    def pause_after_2(rec):
        if rec["epoch"] == 2:
            raise StopTraining

    first = fresh()
    part = train(first, task, recipe, seed=3, callbacks=[pause_after_2])
    assert part.stopped_early and part.state is not None and part.state.epoch == 2
    save_checkpoint(tmp_path / "paused", first, SPEC, {})
    part.state.save(tmp_path / "paused")
    torch.manual_seed(123)  # whatever the global RNG did in between
    second, _, _ = load_checkpoint(tmp_path / "paused")
    rest = train(second, task, recipe, seed=3, resume=TrainState.load(tmp_path / "paused"))
    for (name, a), b in zip(straight.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in whole.history]
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in rest.history] == strip
    assert rest.forward_backward == whole.forward_backward
