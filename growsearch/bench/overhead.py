"""Orchestration overhead of the Ray executor against the in-process executor.

The same training trials (one at a time, no early stopping) run through both
executors. Per-trial overhead = (wall time of the stage - time spent inside the trials)
/ trials, in seconds and as a share of the mean trial time. Also: Ray start-up time,
and the peak resident memory of all Ray processes (raylet, GCS, workers), sampled
every 0.2 s with psutil.
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


def run_overhead_benchmark(epochs: int = 40, out_dir: str = "runs/bench-overhead") -> dict[str, Any]:
    """CNN trials on MNIST-1D: ~0.3 s epochs, >= 10 s trials on one core (a realistic grain:
    every epoch is one ``tune.report`` round-trip to the driver)."""
    torch.set_num_threads(1)
    model, spec, _ = pretrain("cnn", "mnist1d", epochs=2)
    cfg: SearchConfig = load_config({"base": {"checkpoint": "unused"}, "space": "cnn.yaml",
                                     "executor": {"name": "ray", "max_concurrent_trials": 1}})
    recipe = TrainRecipe(epochs=epochs, lr=2e-3)
    cfg.training = recipe
    ctx = SearchContext(spec, {k: v.clone() for k, v in model.state_dict().items()}, "mnist1d", recipe,
                        cfg.manifold, 0, os.path.abspath(out_dir))
    jobs = [TrainJob(f"c{i:04d}", plan, DEFAULT_INIT, schedule=False) for i, plan in enumerate(PLANS)]
    local = _stage(LocalExecutor(ctx, "cpu"), jobs)

    from growsearch.search.ray_executor import RayExecutor, connect

    with RaySampler() as sampler:
        start = time.perf_counter()
        connect(cfg.executor)
        startup = time.perf_counter() - start
        executor = RayExecutor(ctx, cfg)
        executor.started = True
        try:
            ray_stage = _stage(executor, jobs)
        finally:
            executor.close()
    # the honest figure: Ray's wall time per trial against the in-process time of the same work
    per_trial = (ray_stage["wall_seconds"] - sum(local["trial_seconds"])) / len(jobs)
    return {"trials": len(jobs), "epochs_per_trial": epochs, "cpus": os.cpu_count(),
            "local": local, "ray": ray_stage, "ray_startup_seconds": startup,
            "ray_peak_rss_mb": sampler.peak / 2**20,
            "overhead_per_trial_seconds": per_trial,
            "overhead_percent_of_trial": 100 * per_trial / local["mean_trial_seconds"]}
