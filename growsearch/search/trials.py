"""What one trial does, whichever executor runs it.

:func:`screen_candidate` grows the base by a plan, records the function-preservation
deviation and computes the surrogate and cost figures. :func:`train_candidate` grows
again (growth is deterministic given the seed, so nothing large has to travel between
stages or processes), trains with the search's recipe, reports every epoch, and saves
the trained model. Both return plain JSON-ready records and never raise for a
candidate's own failure: an exception or a NaN loss becomes ``stage: failed`` with the
reason, so the search goes on.
"""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from growsearch.checkpoint import load_checkpoint, save_checkpoint
from growsearch.data import Task, load_dataset
from growsearch.errors import GrowsearchError, TrainingError
from growsearch.faults import fault_during, maybe_inject
from growsearch.grow import ExpansionPlan
from growsearch.metrics import ManifoldConfig, grow_on_task, score_model
from growsearch.models import build
from growsearch.search.surrogate import surrogate_names, surrogate_parts
from growsearch.train import (
    StopTraining,
    TrainRecipe,
    TrainState,
    evaluate,
    resolve_device,
    task_score,
    train,
)


@dataclass
class SearchContext:
    """Everything a trial needs, small enough to ship to a worker process."""

    base_spec: dict[str, Any]
    base_state: dict[str, torch.Tensor]
    dataset: str
    recipe: TrainRecipe
    manifold: ManifoldConfig
    seed: int
    out: str
    surrogate: str | list[str] = "manifold"  # the search's surrogate: which scores screening computes

    def task(self) -> Task:
        return load_dataset(self.dataset)

    def base(self, device: torch.device) -> torch.nn.Module:
        model = build(self.base_spec)
        model.load_state_dict(self.base_state)
        return model.to(device)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, (GrowsearchError, TrainingError)):
        return f"{type(exc).__name__}: {exc}"
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" (at {Path(frame.filename).name}:{frame.lineno})" if frame else ""
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}{where}"


def environment_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is the environment's fault (a full disk, a lost file or connection),
    not the candidate's: such a failure is retried by ``--resume``; a candidate's own failure
    (a NaN loss, an exception in its model, running out of GPU memory) stays failed."""
    return isinstance(exc, OSError) and not isinstance(exc, GrowsearchError)


def _retry(exc: BaseException) -> dict[str, Any]:
    return {"retry": True} if environment_failure(exc) else {}


def relative_to_results(path: str | Path, out: str | Path) -> str:
    """``path`` as records store it: relative to the results folder when inside it, so a
    copied or moved folder reads its own files, and ``report`` works from any directory."""
    path, out = Path(path).resolve(), Path(out).resolve()
    return str(path.relative_to(out)) if path.is_relative_to(out) else str(path)


def grow_candidate(ctx: SearchContext, plan: dict[str, Any], init: str, device: torch.device):
    task = ctx.task()
    return grow_on_task(ctx.base(device), ctx.base_spec, task, ExpansionPlan.from_dict(plan), init, ctx.seed), task


def screen_candidate(ctx: SearchContext, cid: str, plan: dict[str, Any], init: str,
                     device: str | torch.device | None = None) -> dict[str, Any]:
    """Grow and score one candidate; a JSON-ready record with ``stage`` screened/failed."""
    device = resolve_device(device)
    record: dict[str, Any] = {"id": cid, "plan": plan, "init": init,
                              "plan_name": ExpansionPlan.from_dict(plan).describe(),
                              "kind": ExpansionPlan.from_dict(plan).kind}
    start = time.perf_counter()
    try:
        maybe_inject("screen", cid)
        grown, task = grow_candidate(ctx, plan, init, device)
        scores = score_model(grown.model, task, ctx.manifold)
        if not math.isfinite(scores["manifold_metric"]) and scores["manifold_metric"] != -math.inf:
            raise TrainingError(f"manifold metric is {scores['manifold_metric']}")
        parts = surrogate_parts(grown.model, task, scores, surrogate_names(ctx.surrogate), ctx.recipe,
                                ctx.manifold.probe_size, ctx.manifold.seed)
        record.update(
            stage="screened", params=scores["params"], flops=scores["flops"], surrogate_parts=parts,
            manifold_metric=scores["manifold_metric"], manifold_per_param=scores["manifold_per_param"],
            manifold=scores["manifold"], max_abs_output_diff=grown.max_abs_output_diff,
            screen_cost=scores["cost"]["forward_backward"], spec=grown.spec,
        )
    except Exception as exc:
        record.update(stage="failed", reason=_reason(exc), **_retry(exc))
    record["screen_seconds"] = time.perf_counter() - start
    return record


def final_scores(model: torch.nn.Module, task: Task) -> dict[str, float]:
    """A trained model's final figures: ``final_score`` (validation: what the best and the
    gains are chosen by), ``final_test_score`` (reported, never selected on), and accuracy
    and loss on both splits (``final_accuracy``/``final_loss`` are the test figures)."""
    val, test = evaluate(model, *task.split("val")), evaluate(model, *task.split("test"))
    record = {"val_accuracy": val["accuracy"], "val_loss": val["loss"],
              "test_accuracy": test["accuracy"], "test_loss": test["loss"]}
    return {"final_score": task_score(record, task, "val"), "final_test_score": task_score(record, task, "test"),
            "final_accuracy": test["accuracy"], "final_loss": test["loss"],
            "final_val_accuracy": val["accuracy"], "final_val_loss": val["loss"]}


def train_candidate(ctx: SearchContext, cid: str, plan: dict[str, Any] | None, init: str,
                    keep_going: Callable[[int, float], bool] | None = None,
                    on_epoch: Callable[..., None] | None = None,
                    device: str | torch.device | None = None,
                    checkpoint_dir: str | Path | None = None, *,
                    until: int | None = None, resume: str | Path | None = None) -> dict[str, Any]:
    """Fully train one candidate (``plan=None``: the base itself, as the reference).

    ``keep_going(epoch, score)`` is the early-stopping scheduler's decision after each
    epoch; ``on_epoch(record, model, spec)`` receives every per-epoch record with the
    model (tracking, Ray reports and checkpoints). The trained model is saved to
    ``checkpoint_dir`` (default: ``<results>/candidates/<id>``).

    Synchronous successive halving trains in stages: ``until=E`` pauses after epoch ``E``
    (stage ``paused``: the model and its :class:`~growsearch.train.TrainState` saved to
    ``checkpoint_dir``), ``resume=DIR`` continues from such a checkpoint exactly -- also a
    masked candidate paused inside its mask ramp (the state keeps its unfolded tensors; the
    candidate is grown again to carry them).
    """
    device = resolve_device(device)
    out: dict[str, Any] = {"id": cid}
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    state: TrainState | None = None
    try:
        fault = maybe_inject("train", cid)
        if resume is not None:
            state = TrainState.load(resume)
            if state.masked is not None and plan is not None:
                # paused inside the mask ramp: grow again (deterministic) for the model with its
                # mask on; train() loads the state's unfolded tensors into it
                grown, task = grow_candidate(ctx, plan, init, device)
                model, spec = grown.model, grown.spec
            else:
                model, spec, _ = load_checkpoint(resume)
                model, task = model.to(device), ctx.task()
            history.extend(state.history)
        elif plan is None:
            model, task, spec = ctx.base(device), ctx.task(), ctx.base_spec
        else:
            grown, task = grow_candidate(ctx, plan, init, device)
            model, spec = grown.model, grown.spec
        if fault == "nan":
            with torch.no_grad():
                for p in model.parameters():
                    p.fill_(float("inf"))

        def report(rec: dict[str, float]) -> None:
            # the scheduler decides on the validation score; the test score is only recorded
            rec = {**rec, "score": task_score(rec, task, "val"), "test_score": task_score(rec, task, "test")}
            history.append(rec)
            if on_epoch is not None:
                on_epoch(rec, model, spec)
            if keep_going is not None and not keep_going(int(rec["epoch"]), rec["score"]):
                raise StopTraining
            if until is not None and int(rec["epoch"]) >= until and int(rec["epoch"]) < ctx.recipe.epochs:
                raise StopTraining  # a pause: the next stage resumes from here

        # every model trains with the search's recipe as given: a grown candidate and the base's
        # reference alike (the same learning rate), so a gain measures the growth, not the recipe
        result = train(model, task, ctx.recipe, seed=ctx.seed, device=device, callbacks=[report], resume=state)
        final = final_scores(model, task)
        checkpoint = Path(checkpoint_dir or Path(ctx.out) / "candidates" / cid)
        with fault_during("save", cid):
            save_checkpoint(checkpoint, model, spec, {"dataset": ctx.dataset, "candidate": cid, "plan": plan,
                                                      "init": init, "epoch": len(history),
                                                      "test_accuracy": final["final_accuracy"],
                                                      "test_loss": final["final_loss"],
                                                      "val_accuracy": final["final_val_accuracy"],
                                                      "val_loss": final["final_val_loss"]})
        paused = until is not None and result.stopped_early and result.state is not None
        if paused:  # the model at the rung, and what a resume needs; decided by the engine
            result.state.history = list(history)  # with scores, as the record holds them
            result.state.save(checkpoint)
        else:
            (checkpoint / TrainState.FILE).unlink(missing_ok=True)
        stage = "paused" if paused else "stopped_early" if result.stopped_early else "completed"
        out.update(stage=stage, **final, epochs=len(history), train_cost=result.forward_backward,
                   checkpoint=relative_to_results(checkpoint, ctx.out))
    except Exception as exc:
        out.update(stage="failed", reason=_reason(exc), epochs=len(history), **_retry(exc))
    out["history"] = history
    # earlier stages' training time (the resumed state's) plus this stage's
    out["train_seconds"] = time.perf_counter() - start + (state.seconds if state is not None else 0.0)
    return out
