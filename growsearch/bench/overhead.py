"""Orchestration overhead of the Ray executor, and the idle-time cost of synchronous rungs.

* ``trials`` and ``short_epochs``: the same training trials (one at a time, no early
  stopping) through the in-process executor and the Ray Tune executor -- CNN trials of
  ~10 s, and short MLP trials of many ~35 ms epochs, where a per-epoch round trip to the
  driver would dominate. Per-trial overhead = (Ray's wall time - in-process time of the
  same work) / trials, in seconds and as a share of the mean in-process trial time.
* ``scheduler``: the same promoted candidates on Ray with 2 concurrent trials, under
  synchronous successive halving (the default) and asynchronous ASHA: wall time, time
  inside trials, and idle slot time ``slots * wall - busy`` -- what waiting at the rungs costs.
* Ray start-up time, and the peak resident memory of all Ray processes (raylet, GCS,
  workers), sampled every 0.2 s with psutil.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from typing import Any

import psutil
import torch

from growsearch.grow import DEFAULT_INIT
from growsearch.pretrain import pretrain
from growsearch.search.config import SearchConfig, load_config
from growsearch.search.executors import LocalExecutor, TrainJob
from growsearch.search.schedulers import NoStopping
from growsearch.search.trials import SearchContext
from growsearch.train import TrainRecipe

PLANS = ({"width": 2.0}, {"depth": 2}, {"width": 1.5, "depth": 1}, {"width": 2.0, "depth": 1}, {"depth": 3},
         {"width": 1.5})


class RaySampler:
    """Peak total RSS of processes that belong to Ray (by name or command line)."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _ray_rss(self) -> int:
        total = 0
        for p in psutil.process_iter(["name", "cmdline", "memory_info"]):
            try:
                text = (p.info["name"] or "") + " " + " ".join(p.info["cmdline"] or [])
                if any(k in text for k in ("raylet", "gcs_server", "ray::", "ray/_private", "default_worker")):
                    total += p.info["memory_info"].rss
            except (psutil.NoSuchProcess, psutil.AccessDenied, TypeError):
                continue
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._ray_rss())
            time.sleep(0.2)

    def __enter__(self) -> RaySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _stage(executor: Any, jobs: list[TrainJob]) -> dict[str, Any]:
    start = time.perf_counter()
    records: list[dict[str, Any]] = []
    executor.train(jobs, NoStopping(), on_record=records.append)
    wall = time.perf_counter() - start
    inside = [r["train_seconds"] for r in records if "train_seconds" in r]
    if len(inside) != len(jobs):  # Ray: trial seconds come from the last reported epoch
        inside = [r["history"][-1]["seconds"] for r in records]
    overhead = (wall - sum(inside)) / len(jobs)
    return {"wall_seconds": wall, "trial_seconds": inside, "mean_trial_seconds": statistics.mean(inside),
            "overhead_per_trial_seconds": overhead, "overhead_percent": 100 * overhead / statistics.mean(inside),
            "stages": [r.get("stage") for r in records]}


def _context(family: str, dataset: str, recipe: TrainRecipe, out_dir: str, concurrent: int = 1,
             early_stopping: dict[str, Any] | None = None) -> tuple[SearchContext, SearchConfig]:
    model, spec, _ = pretrain(family, dataset, epochs=2)
    cfg: SearchConfig = load_config({"base": {"checkpoint": "unused"}, "space": f"{family}.yaml",
                                     "executor": {"name": "ray", "max_concurrent_trials": concurrent},
                                     "early_stopping": early_stopping or {"policy": "none"}})
    cfg.training = recipe
    ctx = SearchContext(spec, {k: v.clone() for k, v in model.state_dict().items()}, dataset, recipe,
                        cfg.manifold, 0, os.path.abspath(out_dir))
    return ctx, cfg


def _compare(ctx: SearchContext, cfg: SearchConfig, plans: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    """The same trials in-process and on Ray, one at a time."""
    from growsearch.search.ray_executor import RayExecutor

    jobs = [TrainJob(f"c{i:04d}", plan, DEFAULT_INIT, schedule=False) for i, plan in enumerate(plans)]
    local = _stage(LocalExecutor(ctx, "cpu"), jobs)
    executor = RayExecutor(ctx, cfg)
    ray_stage = _stage(executor, jobs)
    # the honest figure: Ray's wall time per trial against the in-process time of the same work
    per_trial = (ray_stage["wall_seconds"] - sum(local["trial_seconds"])) / len(jobs)
    return {"trials": len(jobs), "epochs_per_trial": ctx.recipe.epochs, "local": local, "ray": ray_stage,
            "mean_epoch_seconds": local["mean_trial_seconds"] / ctx.recipe.epochs,
            "overhead_per_trial_seconds": per_trial,
            "overhead_percent_of_trial": 100 * per_trial / local["mean_trial_seconds"]}


class _Timed:
    """Wraps an executor: the wall time of each ``train`` call and the records it gave."""

    def __init__(self, executor: Any) -> None:
        self.executor, self.calls = executor, []

    def train(self, jobs: list[TrainJob], scheduler: Any, on_epoch: Any = None, on_record: Any = None) -> None:
        records: list[dict[str, Any]] = []

        def keep(record: dict[str, Any]) -> None:
            records.append(dict(record))
            on_record(record)

        start = time.perf_counter()
        self.executor.train(jobs, scheduler, on_epoch, keep)
        self.calls.append({"jobs": len(jobs), "wall": time.perf_counter() - start, "records": records})


def _scheduler_cost(policy: str, out_dir: str, plans: tuple[dict[str, Any], ...], epochs: int,
                    concurrent: int = 2) -> dict[str, Any]:
    """Promoted candidates trained on Ray under ``policy``; slot time spent idle."""
    import shutil

    from growsearch.results import SearchState
    from growsearch.search.engine import _train_in_stages
    from growsearch.search.ray_executor import RayExecutor
    from growsearch.search.schedulers import make_scheduler

    folder = os.path.join(out_dir, policy)
    shutil.rmtree(folder, ignore_errors=True)
    ctx, cfg = _context("cnn", "mnist1d", TrainRecipe(epochs=epochs, lr=2e-3), folder, concurrent,
                        {"policy": policy, "grace_epochs": 1, "reduction_factor": 2})
    state = SearchState(folder)
    promoted = [f"c{i:04d}" for i in range(len(plans))]
    for cid, plan in zip(promoted, plans, strict=True):
        state.save({"id": cid, "plan": plan, "init": DEFAULT_INIT, "stage": "promoted"})
    timed = _Timed(RayExecutor(ctx, cfg))
    scheduler = make_scheduler(cfg.early_stopping, epochs)

    def on_record(record: dict[str, Any]) -> None:
        state.update(record["id"], **record)

    start = time.perf_counter()
    if policy == "successive_halving":
        _train_in_stages(cfg, timed, state, scheduler, promoted, [], lambda c, r: None, on_record)
    else:
        timed.train([TrainJob(c, p, DEFAULT_INIT) for c, p in zip(promoted, plans, strict=True)], scheduler,
                    None, on_record)
    wall = time.perf_counter() - start
    # busy slot time: the time inside trials, stage by stage (a resumed stage counts only its own part)
    busy, idle = 0.0, 0.0
    done: dict[str, float] = {}
    for call in timed.calls:
        stage_busy = 0.0
        for r in call["records"]:
            seconds = r["history"][-1]["seconds"] if r.get("history") else 0.0
            stage_busy += seconds - done.get(r["id"], 0.0)
            done[r["id"]] = seconds
        busy += stage_busy
        idle += min(concurrent, call["jobs"]) * call["wall"] - stage_busy
    records = state.records()
    return {"policy": policy, "concurrent_trials": concurrent, "wall_seconds": wall, "busy_seconds": busy,
            "idle_slot_seconds": idle, "idle_percent_of_slot_time": 100 * idle / (busy + idle),
            "stages": len(timed.calls), "epochs_trained": sum(r.get("epochs", 0) for r in records),
            "outcome": {r["id"]: [r.get("stage"), r.get("epochs")] for r in records}}


def run_overhead_benchmark(epochs: int = 40, out_dir: str = "runs/bench-overhead", short_epochs: int = 150,
                           scheduler_epochs: int = 8) -> dict[str, Any]:
    """CNN trials on MNIST-1D: ~0.3 s epochs, >= 10 s trials on one core; MLP trials on
    MNIST-1D: ~35 ms epochs. Then the scheduler comparison on Ray with 2 concurrent trials."""
    from growsearch.search.ray_executor import connect

    torch.set_num_threads(1)
    result: dict[str, Any] = {"cpus": os.cpu_count()}
    with RaySampler() as sampler:
        start = time.perf_counter()
        connect(load_config({"base": {"checkpoint": "unused"}, "space": "cnn.yaml"}).executor)
        result["ray_startup_seconds"] = time.perf_counter() - start
        try:
            ctx, cfg = _context("cnn", "mnist1d", TrainRecipe(epochs=epochs, lr=2e-3), out_dir)
            result.update(_compare(ctx, cfg, PLANS))
            ctx, cfg = _context("mlp", "mnist1d", TrainRecipe(epochs=short_epochs, lr=2e-3), out_dir)
            result["short_epochs"] = _compare(ctx, cfg, PLANS[:4])
            result["scheduler"] = {policy: _scheduler_cost(policy, os.path.join(out_dir, "scheduler"),
                                                           PLANS, scheduler_epochs)
                                   for policy in ("successive_halving", "asha")}
        finally:
            import ray

            ray.shutdown()
    result["ray_peak_rss_mb"] = sampler.peak / 2**20
    return result
