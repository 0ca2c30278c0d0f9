"""Fault scenarios, each really caused, each checked against an uninterrupted run.

Every scenario runs the same small search (same seed) in a separate ``growsearch run``
process with ``GROWSEARCH_INJECT_FAULT`` set, resumes it when the fault killed the
process, and compares the final leaderboard with an uninterrupted reference run:

* ``injected``: the fault really happened (the process died with SIGKILL, or the
  faulty candidate carries the fault's reason);
* ``survived``: the search finished with a complete leaderboard;
* ``lost``: reference candidates missing from the final leaderboard (must be 0);
* ``duplicates``: repeated candidates in the leaderboard plus repeated MLflow child runs
  of one candidate (must be 0);
* ``identical``: candidates, plans, inits and stages equal the reference (kills only:
  a killed search must end exactly where an uninterrupted one does).

Beyond SIGKILL at four stages, a candidate that raises and one whose training diverges:
SIGINT (Ctrl-C to the process group) and SIGTERM at every stage with the local executor
and during screening and training with Ray (exit 130 / 143, nothing decided, then
``--resume``), a torn last line of the study journal, a full disk while saving checkpoints
(``RLIMIT_FSIZE``: exit 1, retried by ``--resume``), two processes on one folder (the
second refused), kill -9 of the whole process group with Ray trials in flight, and a Ray
worker killed mid-trial (retried within the run).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

FAULT_CONFIG = {
    "name": "faults",
    "base": {"pretrain": {"family": "mlp", "dataset": "digits", "epochs": 3}},
    "space": "mlp.yaml",
    "candidates": 6,
    "promotion": {"policy": "top_k", "k": 3},
    "training": {"epochs": 4, "batch_size": 64},
    "early_stopping": {"policy": "asha", "grace_epochs": 1, "reduction_factor": 3},
    "manifold": {"probe_size": 32, "steps": 2},
    "executor": {"name": "local"},
}
KEY = ["candidate", "plan", "init", "stage"]


def _env(fault: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "GROWSEARCH_INJECT_FAULT"}
    if fault:
        env["GROWSEARCH_INJECT_FAULT"] = fault
    return env


def _cmd(cfg_path: Path, out: Path, resume: bool = False) -> list[str]:
    return [sys.executable, "-m", "growsearch.cli", "run", str(cfg_path), "--out", str(out),
            *(["--resume"] if resume else [])]


def _run(cfg_path: Path, out: Path, fault: str | None, resume: bool = False,
         preexec: Any = None) -> subprocess.CompletedProcess:
    # a session of its own: a signal to its process group (Ctrl-C) reaches the search, not the benchmark
    return subprocess.run(_cmd(cfg_path, out, resume), env=_env(fault), capture_output=True, text=True, timeout=900,
                          start_new_session=True, preexec_fn=preexec)


def _mlflow_duplicates(out: Path) -> int:
    db = out / "mlflow.db"
    if not db.exists():
        return 0
    with sqlite3.connect(db) as con:
        if not con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'tags'").fetchone():
            return 0  # the store was never set up (the search stopped before tracking began): no runs
        rows = con.execute("SELECT value, COUNT(*) FROM tags WHERE key = 'growsearch.candidate' "
                           "GROUP BY value HAVING COUNT(*) > 1").fetchall()
    return sum(n - 1 for _, n in rows)


def _board(out: Path) -> pd.DataFrame | None:
    path = out / "leaderboard.csv"
    return pd.read_csv(path) if path.exists() else None


def run_fault_benchmark(workdir: str | Path | None = None, ray: bool = True, progress: Any = None,
                        extended: bool = True) -> dict[str, Any]:
    """Run the scenarios; ``extended=False`` keeps only the SIGKILL and candidate-failure ones
    (the unit test's budget)."""
    work = Path(workdir or tempfile.mkdtemp(prefix="growsearch-faults-"))
    work.mkdir(parents=True, exist_ok=True)
    cfg_path = work / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(FAULT_CONFIG))
    start = time.perf_counter()
    ref_out = work / "reference"
    ref = _run(cfg_path, ref_out, None)
    if ref.returncode != 0:
        raise RuntimeError(f"reference run failed: {ref.stderr[-2000:]}")
    reference = _board(ref_out)
    promoted = json.loads((ref_out / "promotion.json").read_text())["promoted"]
    ref_rows = reference.sort_values("candidate")[KEY].values.tolist()

    kills = {
        "kill -9 during screening": "screen:c0003:kill-once:{m}",
        "kill -9 during promotion": "promote:-:kill-once:{m}",
        "kill -9 during full training": f"train:{promoted[1]}:kill-once:{{m}}",
        "kill -9 while writing the leaderboard": "report:-:kill-once:{m}",
    }
    scenarios = []
    for i, (name, fault) in enumerate(kills.items()):
        out, marker = work / f"kill{i}", work / f"kill{i}.marker"
        first = _run(cfg_path, out, fault.format(m=marker))
        second = _run(cfg_path, out, None, resume=True)
        board = _board(out)
        rows = board.sort_values("candidate")[KEY].values.tolist() if board is not None else []
        scenarios.append({
            "scenario": name, "fault": fault.split(":{")[0],
            "injected": first.returncode == -9 and marker.exists(),
            "survived": second.returncode == 0 and board is not None,
            "lost": len(set(reference["candidate"]) - set(board["candidate"] if board is not None else [])),
            "duplicates": (int(board["candidate"].duplicated().sum()) if board is not None else 0)
                          + _mlflow_duplicates(out),
            "identical": rows == ref_rows,
        })
        if progress:
            progress(len(scenarios), name)

    for name, fault, cid in (("candidate raises during screening", "screen:c0001:raise", "c0001"),
                             ("candidate training diverges (NaN loss)", f"train:{promoted[0]}:nan", promoted[0])):
        out = work / cid.replace("c", "x") / name.split()[1]
        proc = _run(cfg_path, out, fault)
        board = _board(out)
        row = board[board["candidate"] == cid].iloc[0] if board is not None else None
        reason = str(row["reason"]) if row is not None else ""
        scenarios.append({
            "scenario": name, "fault": fault,
            "injected": ("InjectedFaultError" in reason) or ("loss became" in reason),
            "survived": proc.returncode == 0 and row is not None and row["stage"] == "failed",
            "lost": len(set(reference["candidate"]) - set(board["candidate"] if board is not None else [])),
            "duplicates": int(board["candidate"].duplicated().sum()) + _mlflow_duplicates(out) if board is not None
                          else 0,
            "reason": reason,
        })
        if progress:
            progress(len(scenarios), name)

    def judge(name: str, fault: str, out: Path, injected: bool, survived: bool, identical: bool = True) -> None:
        board = _board(out)
        rows = board.sort_values("candidate")[KEY].values.tolist() if board is not None else []
        scenarios.append({
            "scenario": name, "fault": fault, "injected": injected, "survived": survived and board is not None,
            "lost": len(set(reference["candidate"]) - set(board["candidate"] if board is not None else [])),
            "duplicates": (int(board["candidate"].duplicated().sum()) if board is not None else 0)
                          + _mlflow_duplicates(out),
            **({"identical": rows == ref_rows} if identical else {}),
        })
        if progress:
            progress(len(scenarios), name)

    # Ctrl-C (SIGINT to the process group) and SIGTERM at every stage: exit 130 / 143, then --resume
    if not extended:
        return _summary(scenarios, start, work)
    ray_cfg = work / "ray.yaml"  # one trial at a time: the Ray path then equals the local one
    ray_cfg.write_text(yaml.safe_dump({**FAULT_CONFIG, "executor": {"name": "ray", "max_concurrent_trials": 1}}))
    stages = {"screening": "screen:c0003", "promotion": "promote:-", "full training": f"train:{promoted[1]}",
              "the leaderboard": "report:-"}
    runs = [(cfg_path, "local", stage) for stage in stages]
    if ray:
        runs += [(ray_cfg, "ray", stage) for stage in ("screening", "full training")]  # inside Ray trials
    for path, executor, stage in runs:
        for sig, code in (("sigint", 130), ("sigterm", 143)):
            name = f"{sig.upper()} during {stage} ({executor})"
            out, marker = work / f"{sig}-{executor}-{stage.split()[-1]}", work / f"{sig}-{executor}-{stage}.marker"
            fault = f"{stages[stage]}:{sig}-once:{marker}"
            first = _run(path, out, fault)
            second = _run(path, out, None, resume=True)
            judge(name, f"{stages[stage]}:{sig}-once", out,
                  first.returncode == code and marker.exists() and not (out / "leaderboard.csv").exists()
                  if stage != "the leaderboard" else first.returncode == code and marker.exists(),
                  second.returncode == 0)

    # a torn last line of the study journal (a kill mid-append), then --resume
    out, marker = work / "torn", work / "torn.marker"
    first = _run(cfg_path, out, f"screen:c0003:kill-once:{marker}")
    journal = out / "study.journal"
    journal.write_bytes(journal.read_bytes() + b'{"op_code": 4, "worker_id": "torn')
    second = _run(cfg_path, out, None, resume=True)
    judge("torn last line of study.journal", "append cut short", out, first.returncode == -9,
          second.returncode == 0 and "dropped a torn last line" in second.stderr)

    # a full disk while saving checkpoints (RLIMIT_FSIZE), then --resume with space freed
    out = work / "disk-full"

    def small_disk() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024, 16 * 1024))

    first = _run(cfg_path, out, None, preexec=small_disk)
    second = _run(cfg_path, out, None, resume=True)
    judge("disk full while saving checkpoints", "RLIMIT_FSIZE 16 KiB", out,
          first.returncode == 1 and "File too large" in first.stderr, second.returncode == 0)

    # two processes on one folder: the second is refused in one line while the first runs
    out = work / "two-processes"
    first_proc = subprocess.Popen(_cmd(cfg_path, out), env=_env(None), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 600
    while time.time() < deadline and not list((out / "candidates").glob("c*.json")):
        time.sleep(0.1)
    second = _run(cfg_path, out, None, resume=True)
    first_proc.communicate(timeout=900)
    judge("two processes on one folder", "second run --resume", out,
          second.returncode == 2 and "is in use by" in second.stderr, first_proc.returncode == 0)

    if ray:
        # kill -9 of the search (its whole process group) with Ray trials in flight
        ray2 = work / "ray2.yaml"
        ray2.write_text(yaml.safe_dump({**FAULT_CONFIG, "executor": {"name": "ray", "max_concurrent_trials": 2}}))
        out = work / "ray-kill-in-flight"
        proc = subprocess.Popen(_cmd(ray2, out), env=_env(None), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)

        def in_flight() -> bool:
            stages_now = [json.loads(p.read_text()).get("stage") for p in (out / "candidates").glob("c*.json")]
            return "proposed" in stages_now and any(s not in ("proposed", None) for s in stages_now)

        deadline = time.time() + 600
        while time.time() < deadline and not in_flight() and proc.poll() is None:
            time.sleep(0.05)
        injected = in_flight()
        os.killpg(proc.pid, 9)
        proc.communicate()
        second = _run(ray2, out, None, resume=True)
        # two trials at a time: Ray's completion order may change proposals, so not compared for identity
        judge("kill -9 with Ray trials in flight", "SIGKILL to the process group", out, injected,
              second.returncode == 0, identical=False)

    if ray:
        ray_cfg = work / "ray.yaml"
        ray_cfg.write_text(yaml.safe_dump({**FAULT_CONFIG, "executor": {"name": "ray", "max_failures": 1,
                                                                          "max_concurrent_trials": 2}}))
        out, marker = work / "ray-worker", work / "ray-worker.marker"
        proc = _run(ray_cfg, out, f"train:{promoted[0]}:kill-once:{marker}")
        board = _board(out)
        record = json.loads((out / "candidates" / f"{promoted[0]}.json").read_text()) if board is not None else {}
        scenarios.append({
            "scenario": "Ray worker killed mid-trial (max_failures=1)", "fault": f"train:{promoted[0]}:kill-once",
            "injected": marker.exists(), "survived": proc.returncode == 0 and record.get("retries") == 1
            and record.get("stage") in ("completed", "stopped_early"),
            "lost": len(set(reference["candidate"]) - set(board["candidate"] if board is not None else [])),
            "duplicates": int(board["candidate"].duplicated().sum()) + _mlflow_duplicates(out) if board is not None
                          else 0,
        })
        if progress:
            progress(len(scenarios), "ray worker")
    return _summary(scenarios, start, work)


def _summary(scenarios: list[dict[str, Any]], start: float, work: Path) -> dict[str, Any]:
    return {"config": FAULT_CONFIG, "scenarios": scenarios,
            "all_survived": all(s["survived"] for s in scenarios),
            "total_lost": sum(s["lost"] for s in scenarios),
            "total_duplicates": sum(s["duplicates"] for s in scenarios),
            "seconds": time.perf_counter() - start, "workdir": str(work)}
