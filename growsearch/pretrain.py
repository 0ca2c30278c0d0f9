"""Build and pretrain a small base model -- the thing growsearch grows.

``default_config(family, task)`` is the small architecture used by the demo, the pools
and ``growsearch pretrain``; ``DEFAULT_RECIPES`` the recipe per dataset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from growsearch import __version__
from growsearch.checkpoint import save_checkpoint
from growsearch.data import Task, load_dataset
from growsearch.errors import ConfigError
from growsearch.models import FAMILIES, CNNConfig, GPTConfig, MLPConfig, ModelConfig, count_params
from growsearch.train import TrainRecipe, TrainResult, evaluate, train

DEFAULT_DATASET = {"mlp": "mnist1d", "cnn": "mnist1d", "gpt": "text"}

DEFAULT_RECIPES: dict[str, TrainRecipe] = {
    "mnist1d": TrainRecipe(epochs=30, batch_size=128, lr=3e-3, weight_decay=0.0),
    "digits": TrainRecipe(epochs=30, batch_size=64, lr=3e-3),
    "text": TrainRecipe(epochs=4, batch_size=32, lr=3e-3, warmup_steps=20),
}


def default_config(family: str, task: Task) -> ModelConfig:
    """The small base architecture of ``family`` for ``task``'s input shape."""
    if family not in FAMILIES:
        raise ConfigError(f"family: got {family!r}; allowed: {', '.join(FAMILIES)}")
    if task.kind == "lm" and family != "gpt":
        raise ConfigError(f"family: {family} cannot model the text dataset; allowed: gpt")
    if task.kind != "lm" and family == "gpt":
        raise ConfigError(f"family: gpt needs a text dataset; {task.name} is a classification task")
    shape = task.input_shape
    if family == "mlp":
        in_dim = 1
        for s in shape:
            in_dim *= s
        return MLPConfig(in_dim=in_dim, out_dim=task.num_classes, hidden=[32, 32])
    if family == "cnn":
        if len(shape) == 1:  # a 1-D signal without channel axis
            return CNNConfig(1, task.num_classes, channels=[8, 16], blocks=[1, 1], dims=1, length=shape[0])
        if len(shape) == 2:  # a 2-D image without channel axis
            return CNNConfig(1, task.num_classes, channels=[8, 16], blocks=[1, 1], dims=2, length=shape[0])
        return CNNConfig(shape[0], task.num_classes, channels=[16, 32], blocks=[1, 1], dims=2,
                         length=shape[1])
    return GPTConfig(vocab_size=task.num_classes, block_size=shape[0], d_model=32, n_layers=2,
                     n_heads=4, mlp_hidden=64)


def pretrain(family: str, dataset: str = "", *, out: str | Path | None = None,
             epochs: int | None = None, seed: int = 0, device: str | None = None,
             callbacks: tuple = ()) -> tuple[torch.nn.Module, dict[str, Any], TrainResult]:
    """Build the default ``family`` model for ``dataset``, train it, optionally save it.

    Returns ``(model, spec, result)``; with ``out`` the checkpoint goes there too.
    """
    dataset = dataset or DEFAULT_DATASET.get(family, "")
    task = load_dataset(dataset)
    cfg = default_config(family, task)
    recipe = DEFAULT_RECIPES.get(dataset, DEFAULT_RECIPES["mnist1d"])
    if epochs is not None:
        recipe = TrainRecipe(**{**recipe.to_dict(), "epochs": epochs})
    torch.manual_seed(seed)
    model = cfg.build()
    result = train(model, task, recipe, seed=seed, device=device, callbacks=callbacks)
    spec = cfg.to_spec()
    if out is not None:
        val, test = evaluate(model, *task.split("val")), evaluate(model, *task.split("test"))
        meta = {"dataset": dataset, "family": family, "seed": seed, "recipe": recipe.to_dict(),
                "params": count_params(model), "val_loss": val["loss"], "val_accuracy": val["accuracy"],
                "test_loss": test["loss"], "test_accuracy": test["accuracy"],
                "forward_backward": result.forward_backward,
                "seconds": result.seconds, "growsearch_version": __version__}
        save_checkpoint(out, model, spec, meta)
    return model, spec, result
