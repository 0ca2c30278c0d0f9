"""The one training and evaluation loop.

Pretraining a base model, training grown candidates, the short-training baseline and
the benchmarks all call :func:`train`, so that "the same recipe" means the same code.
Per-epoch reports go to callbacks (Ray Tune and MLflow hook in there); a callback
raises :class:`StopTraining` to end training early (e.g. a scheduler's decision).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from growsearch._validate import from_dict
from growsearch.data import Task, batches
from growsearch.errors import ConfigError, TrainingError
from growsearch.grow.mask import fold_mask, growth_mask


@dataclass
class TrainRecipe:
    """A full training recipe. ``steps``, when given, overrides ``epochs``."""

    epochs: int = 10
    steps: int | None = None
    batch_size: int = 128
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = 3e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_steps: int = 0
    grad_clip: float | None = 1.0
    # masked growth: steps over which the mask of a model grown with init=masked is
    # ramped from 0 to 1 (then folded away); None: MASK_FRACTION of the run's steps
    mask_steps: int | None = None

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"recipe.{name}: got {getattr(self, name)}; allowed: a positive integer")
        if self.steps is not None and self.steps <= 0:
            raise ConfigError(f"recipe.steps: got {self.steps}; allowed: a positive integer")
        if self.mask_steps is not None and self.mask_steps <= 0:
            raise ConfigError(f"recipe.mask_steps: got {self.mask_steps}; allowed: a positive integer")
        if not self.lr > 0:
            raise ConfigError(f"recipe.lr: got {self.lr}; allowed: > 0")

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "recipe") -> TrainRecipe:
        return from_dict(cls, data, where)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: Default length of the mask ramp of masked growth, as a fraction of the run's steps.
MASK_FRACTION = 0.1


def total_steps(recipe: TrainRecipe, n_train: int) -> int:
    """Optimiser steps of one run of ``recipe`` on ``n_train`` training examples."""
    return recipe.steps or recipe.epochs * math.ceil(n_train / recipe.batch_size)


def mask_steps(recipe: TrainRecipe, n_train: int, where: str = "recipe") -> int:
    """Steps of the mask ramp for a run; ConfigError (naming ``where``) when longer than the run."""
    total = total_steps(recipe, n_train)
    if recipe.mask_steps is None:
        return max(1, round(MASK_FRACTION * total))
    if recipe.mask_steps > total:
        raise ConfigError(f"{where}.mask_steps: got {recipe.mask_steps}; allowed: 1..{total} "
                          "(the mask must reach 1 within the training run)")
    return recipe.mask_steps


class StopTraining(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised by a callback to end training after the current epoch."""


@dataclass
class TrainState:
    """Where a training stopped by a callback stands: with the model's weights, enough to
    continue it (``train(..., resume=state)``) exactly as if it had never stopped --
    optimizer moments, the data-order generator and the global RNG included. Saved with
    :meth:`save` beside the model's checkpoint, loaded with ``weights_only=True``.

    A masked-grown model stopped inside its mask ramp is folded when training returns (at
    the mask's value then: the checkpoint beside holds that plain model), so the state also
    keeps what the fold loses: ``masked``, the model's tensors with the mask still unfolded
    (its parametrised names), and ``mask_value``. A resume loads them into the model *as
    grown* (its mask on) and ramps on from there."""

    step: int
    epoch: int
    forward_backward: int
    seconds: float
    history: list[dict[str, float]]
    optimizer: dict[str, Any]
    generator: torch.Tensor
    rng: torch.Tensor
    masked: dict[str, torch.Tensor] | None = None  # None: no mask left to ramp (or an older state)
    mask_value: float | None = None

    FILE = "train_state.pt"

    def save(self, directory: str | Path) -> None:
        torch.save(asdict(self), Path(directory) / self.FILE)

    @classmethod
    def load(cls, directory: str | Path) -> TrainState:
        return cls(**torch.load(Path(directory) / cls.FILE, weights_only=True))


@dataclass
class TrainResult:
    history: list[dict[str, float]] = field(default_factory=list)
    forward_backward: int = 0  # examples that went through a forward+backward pass
    seconds: float = 0.0
    stopped_early: bool = False
    state: TrainState | None = None  # set when stopped early: what a resume needs

    @property
    def final(self) -> dict[str, float]:
        return self.history[-1] if self.history else {}


Callback = Callable[[dict[str, float]], None]


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/``"auto"``: the GPU when CUDA is available, else the CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def task_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy for classification (N, C) and language modelling (N, T, V)."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 1024,
             device: torch.device | None = None) -> dict[str, float]:
    """Mean loss and accuracy (per token for language models) in eval mode."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    for xb, yb in batches(x, y, batch_size, device=device):
        logits = model(xb)
        n = yb.numel()
        total_loss += task_loss(logits, yb).item() * n
        correct += (logits.argmax(-1) == yb).sum().item()
        count += n
    model.train(was_training)
    return {"loss": total_loss / count, "accuracy": correct / count}


def task_score(record: dict[str, float], task: Task, split: Literal["val", "test"] = "val") -> float:
    """The score to rank by (higher is better): accuracy, or -loss for language models, on
    ``split``. Decisions (early stopping, the best candidate, gains) use ``val``; ``test``
    is for final numbers only."""
    return -record[f"{split}_loss"] if task.kind == "lm" else record[f"{split}_accuracy"]


def _lr_factor(step: int, total: int, recipe: TrainRecipe) -> float:
    if recipe.warmup_steps and step < recipe.warmup_steps:
        return (step + 1) / recipe.warmup_steps
    if recipe.schedule == "constant":
        return 1.0
    progress = (step - recipe.warmup_steps) / max(1, total - recipe.warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def make_optimizer(params: Any, recipe: TrainRecipe) -> torch.optim.Optimizer:
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum,
                               weight_decay=recipe.weight_decay)
    return torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)


def train(model: nn.Module, task: Task, recipe: TrainRecipe, *, seed: int = 0,
          device: str | torch.device | None = None, callbacks: Sequence[Callback] = (),
          evaluate_each_epoch: bool = True, resume: TrainState | None = None) -> TrainResult:
    """Train ``model`` in place on ``task`` with ``recipe``; deterministic given ``seed``.

    A model grown with ``init="masked"`` carries a growth mask: it is ramped from 0 to 1
    over the first :func:`mask_steps` steps and then folded away (also when training
    stops early), so the trained model is a plain family model.

    Every epoch (and at the end of a ``steps`` budget) the model is evaluated on the
    validation and test splits and a record ``{epoch, step, train_loss, val_loss,
    val_accuracy, test_loss, test_accuracy, forward_backward, seconds}`` goes to each
    callback (decisions read ``val_*``; ``test_*`` are final numbers). Raises :class:`TrainingError`
    when the loss becomes NaN/Inf or the device runs out of memory. A training stopped by
    a callback returns its :class:`TrainState`; ``resume=`` that state continues it bit for
    bit, with ``model`` holding the weights it stopped with -- or, when it stopped inside
    the mask ramp (``state.masked``), ``model`` as grown, still carrying its growth mask:
    the state's unfolded tensors are loaded into it and the ramp goes on.
    """
    device = resolve_device(device)
    model.to(device)
    model.train()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    n = len(task.x_train)
    total = total_steps(recipe, n)
    mask = growth_mask(model)
    if resume is not None and resume.masked is not None:  # stopped inside the ramp: its unfolded tensors
        if mask is None:
            raise TrainingError("resume: the training stopped inside the mask ramp; pass the model as grown "
                                "(init=masked, its growth mask still on), not the folded checkpoint")
        model.load_state_dict(resume.masked)
        mask.set(resume.mask_value if resume.mask_value is not None else 0.0)
    ramp = mask_steps(recipe, n) if mask is not None else 0
    # parameters in the order of their plain names, so that a masked model (parametrised
    # weights) and the plain model it folds into share one optimiser layout (pause/resume)
    named = sorted(model.named_parameters(),
                   key=lambda kv: kv[0].replace("parametrizations.", "").replace(".original", ""))
    opt = make_optimizer([p for _, p in named], recipe)
    result = TrainResult()
    start = time.perf_counter()
    step, epoch = 0, 0
    if resume is not None:
        step, epoch, result.forward_backward = resume.step, resume.epoch, resume.forward_backward
        result.history = list(resume.history)
        opt.load_state_dict(resume.optimizer)
        gen.set_state(resume.generator)
        torch.set_rng_state(resume.rng)
        start -= resume.seconds
    try:
        while step < total:
            epoch += 1
            running, seen = 0.0, 0
            for xb, yb in batches(task.x_train, task.y_train, recipe.batch_size, shuffle=True,
                                  generator=gen, device=device):
                for group in opt.param_groups:
                    group["lr"] = recipe.lr * _lr_factor(step, total, recipe)
                if mask is not None:
                    mask.set(step / ramp)
                loss = task_loss(model(xb), yb)
                if not torch.isfinite(loss):
                    raise TrainingError(f"loss became {loss.item()} at step {step} (epoch {epoch})")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if recipe.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
                opt.step()
                running += loss.item() * len(xb)
                seen += len(xb)
                result.forward_backward += len(xb)
                step += 1
                if mask is not None and step >= ramp:  # the ramp is done: a plain model again
                    mask.set(1.0)
                    mask.fold()
                    mask = None
                if step >= total:
                    break
            record: dict[str, float] = {"epoch": epoch, "step": step, "train_loss": running / seen,
                                        "forward_backward": result.forward_backward}
            if evaluate_each_epoch or step >= total:
                for split in ("val", "test"):
                    scores = evaluate(model, *task.split(split), device=device)
                    record.update({f"{split}_loss": scores["loss"], f"{split}_accuracy": scores["accuracy"]})
            record["seconds"] = time.perf_counter() - start
            result.history.append(record)
            try:
                for callback in callbacks:
                    callback(record)
            except StopTraining:
                result.stopped_early = True
                # inside the ramp: the mask is folded below, so keep the unfolded tensors (copies)
                masked = None if mask is None else {k: v.detach().clone() for k, v in model.state_dict().items()}
                result.state = TrainState(step, epoch, result.forward_backward, record["seconds"],
                                          list(result.history), opt.state_dict(), gen.get_state(),
                                          torch.get_rng_state(), masked, None if mask is None else mask.value)
                break
    except torch.OutOfMemoryError as exc:
        raise TrainingError(f"out of memory on {device}: {str(exc).splitlines()[0]}") from None
    finally:
        fold_mask(model)  # stopped before the ramp ended: fold at the mask's current value (see TrainState)
    result.seconds = time.perf_counter() - start
    return result
