"""Fault scenarios, each really caused, each checked against an uninterrupted run.

Every scenario runs the same small search (same seed) in a separate ``growsearch run``
process with ``GROWSEARCH_INJECT_FAULT`` set, resumes it when the fault killed the
process, and compares the final leaderboard with an uninterrupted reference run:

* ``injected``: the fault really happened where the scenario says (the process died with
  SIGKILL, exited 130 / 143 after the signal without a leaderboard, or the faulty
  candidate carries the fault's reason); judged on the faulty run, before any resume;
* ``survived``: the search finished with a complete leaderboard;
* ``lost``: reference candidates missing from the final leaderboard (must be 0);
* ``duplicates``: repeated candidates in the leaderboard plus repeated MLflow child runs
  of one candidate (must be 0);
* ``identical``: candidates, plans, inits and stages equal the reference (every scenario
  that stops and resumes the search: it must end exactly where an uninterrupted one does).

Beyond SIGKILL at four stages, a candidate that raises and one whose training diverges:
SIGINT (Ctrl-C to the process group) and SIGTERM at every stage with the local executor
and during screening and training with Ray (the signal fired from inside the trial, to
the search's process group: exit 130 / 143, nothing decided, then ``--resume``), a torn
last line of the study journal, a full disk while saving the best candidate's checkpoint
(the file-size limit lowered for that write, so the OS refuses it: exit 1, the training
kept for a retry, retried by ``--resume``) and from the start (the MLflow store cannot be
created: one line, exit 1, then ``--resume``), two processes on one folder (the
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

from growsearch.errors import ConfigError

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


def _judge(reference: pd.DataFrame, ref_rows: list, name: str, fault: str, out: Path, injected: bool,
           survived: bool, identical: bool = True, **extra: Any) -> dict[str, Any]:
    """One scenario's verdict, against the uninterrupted reference run."""
    board = _board(out)
    rows = board.sort_values("candidate")[KEY].values.tolist() if board is not None else []
    return {
        "scenario": name, "fault": fault, "injected": bool(injected), "survived": bool(survived and board is not None),
        "lost": len(set(reference["candidate"]) - set(board["candidate"] if board is not None else [])),
        "duplicates": (int(board["candidate"].duplicated().sum()) if board is not None else 0)
                      + _mlflow_duplicates(out),
        **({"identical": rows == ref_rows} if identical else {}), **extra,
    }


SIGNAL_STAGES = ("screening", "promotion", "full training", "the leaderboard")
RAY_SIGNAL_STAGES = ("screening", "full training")  # inside Ray trials


def scenario_names(ray: bool = True, extended: bool = True) -> list[str]:
    """Every scenario :func:`run_fault_benchmark` runs with these settings, in order."""
    names = ["kill -9 during screening", "kill -9 during promotion", "kill -9 during full training",
             "kill -9 while writing the leaderboard", "candidate raises during screening",
             "candidate training diverges (NaN loss)"]
    if not extended:
        return names
    runs = [("local", stage) for stage in SIGNAL_STAGES] + ([("ray", s) for s in RAY_SIGNAL_STAGES] if ray else [])
    names += [f"{sig} during {stage} ({executor})" for executor, stage in runs for sig in ("SIGINT", "SIGTERM")]
    names += ["torn last line of study.journal", "disk full while saving checkpoints",
              "disk full when the search starts", "two processes on one folder"]
    if ray:
        names += ["kill -9 with Ray trials in flight", "Ray worker killed mid-trial (max_failures=1)"]
    return names


def select_scenarios(patterns: list[str] | None, ray: bool = True, extended: bool = True) -> list[str]:
    """The scenarios whose names contain one of ``patterns`` (case-insensitive; all when
    none is given); a pattern that matches none is an error naming the scenarios."""
    names = scenario_names(ray, extended)
    if not patterns:
        return names
    for pattern in patterns:
        if not any(pattern.lower() in n.lower() for n in names):
            raise ConfigError(f"--scenario: {pattern!r} matches no scenario; choose from: " + "; ".join(names))
    return [n for n in names if any(p.lower() in n.lower() for p in patterns)]


def run_fault_benchmark(workdir: str | Path | None = None, ray: bool = True, progress: Any = None,
                        extended: bool = True, scenarios: list[str] | None = None) -> dict[str, Any]:
    """Run the scenarios; ``extended=False`` keeps only the SIGKILL and candidate-failure ones
    (the unit test's budget); ``scenarios`` keeps those whose names contain one of its
    strings (see :func:`select_scenarios`)."""
    wanted = select_scenarios(scenarios, ray, extended)
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
    results: list[dict[str, Any]] = []

    def judge(name: str, fault: str, out: Path, injected: bool, survived: bool, identical: bool = True,
              **extra: Any) -> None:
        results.append(_judge(reference, ref_rows, name, fault, out, injected, survived, identical, **extra))
        if progress:
            progress(len(results), name)

    kills = {
        "kill -9 during screening": "screen:c0003:kill-once:{m}",
        "kill -9 during promotion": "promote:-:kill-once:{m}",
        "kill -9 during full training": f"train:{promoted[1]}:kill-once:{{m}}",
        "kill -9 while writing the leaderboard": "report:-:kill-once:{m}",
    }
    for i, (name, fault) in enumerate(kills.items()):
        if name not in wanted:
            continue
        out, marker = work / f"kill{i}", work / f"kill{i}.marker"
        first = _run(cfg_path, out, fault.format(m=marker))
        second = _run(cfg_path, out, None, resume=True)
        judge(name, fault.split(":{")[0], out, first.returncode == -9 and marker.exists(), second.returncode == 0,
              exit_code=first.returncode)

    for name, fault, cid in (("candidate raises during screening", "screen:c0001:raise", "c0001"),
                             ("candidate training diverges (NaN loss)", f"train:{promoted[0]}:nan", promoted[0])):
        if name not in wanted:
            continue
        out = work / cid.replace("c", "x") / name.split()[1]
        proc = _run(cfg_path, out, fault)
        board = _board(out)
        row = board[board["candidate"] == cid].iloc[0] if board is not None else None
        reason = str(row["reason"]) if row is not None else ""
        judge(name, fault, out, ("InjectedFaultError" in reason) or ("loss became" in reason),
              proc.returncode == 0 and row is not None and row["stage"] == "failed", identical=False, reason=reason)

    # Ctrl-C (SIGINT to the process group) and SIGTERM at every stage: exit 130 / 143, then --resume
    ray_cfg = work / "ray.yaml"  # one trial at a time: the Ray path then equals the local one
    ray_cfg.write_text(yaml.safe_dump({**FAULT_CONFIG, "executor": {"name": "ray", "max_concurrent_trials": 1}}))
    stages = {"screening": "screen:c0003", "promotion": "promote:-", "full training": f"train:{promoted[1]}",
              "the leaderboard": "report:-"}
    runs = [(cfg_path, "local", stage) for stage in SIGNAL_STAGES]
    runs += [(ray_cfg, "ray", stage) for stage in RAY_SIGNAL_STAGES]
    for path, executor, stage in runs:
        for sig, code in (("sigint", 130), ("sigterm", 143)):
            name = f"{sig.upper()} during {stage} ({executor})"
            if name not in wanted:
                continue
            out, marker = work / f"{sig}-{executor}-{stage.split()[-1]}", work / f"{sig}-{executor}-{stage}.marker"
            fault = f"{stages[stage]}:{sig}-once:{marker}"
            first = _run(path, out, fault)
            # judged before the resume writes its leaderboard: the interrupted run decided nothing
            # (a leaderboard interrupted while being written may exist: its files are replaced whole)
            injected = first.returncode == code and marker.exists() and \
                f"interrupted by {sig.upper()}" in first.stderr and \
                (stage == "the leaderboard" or not (out / "leaderboard.csv").exists())
            second = _run(path, out, None, resume=True)
            judge(name, f"{stages[stage]}:{sig}-once", out, injected, second.returncode == 0,
                  exit_code=first.returncode)

    if "torn last line of study.journal" in wanted:  # a kill mid-append, then --resume
        out, marker = work / "torn", work / "torn.marker"
        first = _run(cfg_path, out, f"screen:c0003:kill-once:{marker}")
        journal = out / "study.journal"
        journal.write_bytes(journal.read_bytes() + b'{"op_code": 4, "worker_id": "torn')
        second = _run(cfg_path, out, None, resume=True)
        judge("torn last line of study.journal", "append cut short", out, first.returncode == -9,
              second.returncode == 0 and "dropped a torn last line" in second.stderr)

    if "disk full while saving checkpoints" in wanted:
        # the best candidate's checkpoint meets a full disk (the OS refuses the write: EFBIG); the
        # search stops before the leaderboard (exit 1, the training kept for a retry), and --resume
        # with space freed trains it again and ends where an uninterrupted search does
        out, marker = work / "disk-full", work / "disk-full.marker"
        fault = f"save:{promoted[0]}:disk-full-once"
        first = _run(cfg_path, out, f"{fault}:{marker}")
        record_path = out / "candidates" / f"{promoted[0]}.json"
        record = json.loads(record_path.read_text()) if record_path.exists() else {}
        injected = first.returncode == 1 and marker.exists() and "File too large" in first.stderr and \
            record.get("stage") == "failed" and record.get("retry") is True and \
            not (out / "leaderboard.csv").exists()
        second = _run(cfg_path, out, None, resume=True)
        record = json.loads(record_path.read_text()) if record_path.exists() else {}
        judge("disk full while saving checkpoints", fault, out, injected,
              second.returncode == 0 and record.get("stage") in ("completed", "stopped_early")
              and "retry" not in record, exit_code=first.returncode)

    if "disk full when the search starts" in wanted:
        # no file may grow beyond 16 KiB from the start: the MLflow store cannot be created; one
        # line and exit 1, nothing decided; --resume with space freed starts the search afresh
        out = work / "disk-full-at-start"

        def small_disk() -> None:
            import resource

            resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024, 16 * 1024))

        first = _run(cfg_path, out, None, preexec=small_disk)
        injected = first.returncode == 1 and "disk I/O error" in first.stderr and \
            len(first.stderr.strip().splitlines()) == 1 and not (out / "config.yaml").exists()
        second = _run(cfg_path, out, None, resume=True)
        judge("disk full when the search starts", "RLIMIT_FSIZE 16 KiB for the whole run", out, injected,
              second.returncode == 0, exit_code=first.returncode)

    if "two processes on one folder" in wanted:  # the second is refused in one line while the first runs
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

    if "kill -9 with Ray trials in flight" in wanted:  # SIGKILL to the search's whole process group
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

    if "Ray worker killed mid-trial (max_failures=1)" in wanted:
        ray3 = work / "ray3.yaml"
        ray3.write_text(yaml.safe_dump({**FAULT_CONFIG, "executor": {"name": "ray", "max_failures": 1,
                                                                      "max_concurrent_trials": 2}}))
        out, marker = work / "ray-worker", work / "ray-worker.marker"
        proc = _run(ray3, out, f"train:{promoted[0]}:kill-once:{marker}")
        board = _board(out)
        record = json.loads((out / "candidates" / f"{promoted[0]}.json").read_text()) if board is not None else {}
        judge("Ray worker killed mid-trial (max_failures=1)", f"train:{promoted[0]}:kill-once", out,
              marker.exists(), proc.returncode == 0 and record.get("retries") == 1
              and record.get("stage") in ("completed", "stopped_early"), identical=False)
    return _summary(results, start, work)


def _summary(scenarios: list[dict[str, Any]], start: float, work: Path) -> dict[str, Any]:
    return {"config": FAULT_CONFIG, "scenarios": scenarios,
            "all_injected": all(s["injected"] for s in scenarios),
            "all_survived": all(s["survived"] for s in scenarios),
            "total_lost": sum(s["lost"] for s in scenarios),
            "total_duplicates": sum(s["duplicates"] for s in scenarios),
            "seconds": time.perf_counter() - start, "workdir": str(work)}
