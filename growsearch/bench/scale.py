"""Scale: hundreds of candidates on a real multi-node Ray cluster, measured (issue 23).

A head and several worker nodes are started with ``ray start --block`` on 127.0.0.1, each
in a session of its own (so the benchmark knows every PID it started and tears down only
those: never ``ray stop``, which would stop every Ray instance of this user). Worker nodes
declare many logical CPUs and a fake accelerator resource, so Ray schedules as on a large
cluster while the trials themselves are tiny (an MLP on digits, a two-step manifold screen,
a few training steps). The search is submitted as users do it: ``ray job submit --
python -m growsearch.cli run CONFIG --out DIR`` (``examples/ray_cluster/``).

Measured per run (one JSON entry each):

* ``candidates_per_min_orchestration``: candidates / (screening wall - trial work / slots),
  where trial work is the screens' own seconds (``screen_seconds``, measured inside each
  trial) and slots the concurrent trials -- what the cluster's orchestration could sustain
  if trials took no time; and ``candidates_per_min_driver_cpu`` = 60 / driver CPU seconds
  per candidate, the bound the (single) driver process sets;
* the driver (the job's ``growsearch run`` process): CPU seconds and peak resident memory
  (the kernel's ``VmHWM``), sampled every 0.5 s, per candidate;
* the Optuna journal, the MLflow store (``mlflow.db`` + ``mlartifacts/``), the MLflow
  ledger and the candidate records on disk, in bytes per candidate;
* MLflow logging time per child run, as the tracker measured it in the driver (SQLite, and
  a real ``mlflow server`` on 127.0.0.1 for one size);
* time to the first screened candidate (from the submission, and from the driver's start).

Faults (:func:`node_loss` and :func:`driver_loss`): a worker node's processes killed with
SIGKILL while screening trials run on it (Tune retries them on the other nodes per
``max_failures``), and the driver killed with ``kill -9`` and the job resubmitted with
``--resume``; each checked for candidates lost or duplicated and MLflow children against
the leaderboard, the driver loss against an uninterrupted run's leaderboard.

Memory: every concurrent trial is a Ray worker process that imports torch; the benchmark
measures one such worker (unique set size) before a run and refuses a concurrency whose
workers would not fit in ``memory_budget_gb``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from growsearch.tracking import git_revision


def free_port() -> int:
    """A TCP port nothing listens on now (127.0.0.1)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_env() -> dict[str, str]:
    """The environment of every process of the benchmark's cluster: auth off (loopback
    only), no usage stats, and few idle workers: by default a raylet keeps up to its
    logical CPU count of idle Python workers (``num_workers_soft_limit``), and with 32
    declared CPUs per node that measured 56 idle workers of ~100 MB each across two nodes
    -- 5.5 GB for nothing on this machine. Idle workers above 2 per node are stopped."""
    return {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_raylet_start_wait_time_s": "300", "RAY_num_workers_soft_limit": "2",
            "RAY_prestart_worker_first_driver": "0", "RAY_enable_worker_prestart": "0",
            "PYTHONUNBUFFERED": "1"}


@dataclass
class Node:
    """One ``ray start --block`` process (its own session) and what it declared."""

    name: str
    proc: subprocess.Popen
    cpus: int
    gpus: int

    def pids(self) -> list[int]:
        """Every live process of this node: the ``ray start`` process and its descendants."""
        try:
            root = psutil.Process(self.proc.pid)
            return [root.pid, *(c.pid for c in root.children(recursive=True))]
        except psutil.Error:
            return []

    def kill(self) -> list[int]:
        """SIGKILL every process of this node (by the PIDs this benchmark started: the
        node's session and the descendants of its ``ray start``); the PIDs killed."""
        pids = self.pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=30)
        return pids


class ClusterLostError(RuntimeError):
    """The benchmark's cluster was stopped by someone else while a job ran."""


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@dataclass
class Cluster:
    """A multi-node Ray cluster on 127.0.0.1 started by this benchmark (``with`` tears it down)."""

    workers: int = 2
    cpus_per_node: int = 32
    accel_per_node: int = 4
    gpus_per_node: int = 0
    head_cpus: int = 0  # the head runs the driver; trials go to the worker nodes
    temp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="gss-")))  # short: socket paths
    nodes: list[Node] = field(default_factory=list)
    port: int = 0
    dashboard: int = 0
    leftover: int = 0  # processes of this cluster still alive after stop()

    @property
    def address(self) -> str:
        """The job server's address (``ray job submit --address``)."""
        return f"http://127.0.0.1:{self.dashboard}"

    def _start(self, name: str, args: list[str], cpus: int, gpus: int) -> Node:
        ports = ["--node-manager-port", str(free_port()), "--object-manager-port", str(free_port()),
                 "--dashboard-agent-listen-port", str(free_port()), "--dashboard-agent-grpc-port", str(free_port()),
                 "--metrics-export-port", str(free_port()), "--runtime-env-agent-port", str(free_port())]
        resources = json.dumps({"accel": self.accel_per_node}) if self.accel_per_node else "{}"
        cmd = ["ray", "start", "--block", "--node-ip-address", "127.0.0.1", "--num-cpus", str(cpus),
               "--num-gpus", str(gpus), "--resources", resources, "--disable-usage-stats", *ports, *args]
        log = open(self.temp / f"{name}.log", "w")  # noqa: SIM115 -- closed with the process
        proc = subprocess.Popen(cmd, env=_ray_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        node = Node(name, proc, cpus, gpus)
        self.nodes.append(node)
        return node

    def start(self, timeout: float = 300.0) -> Cluster:
        """Start the head, then the worker nodes one at a time (a loaded 2-core machine times
        out raylets started together); wait until every node is alive and the job server
        answers. On failure everything started so far is stopped."""
        self.port, self.dashboard = free_port(), free_port()
        try:
            self._start("head", ["--head", "--port", str(self.port), "--dashboard-host", "127.0.0.1",
                                 "--dashboard-port", str(self.dashboard), "--include-dashboard", "true",
                                 "--ray-client-server-port", str(free_port()), "--temp-dir", str(self.temp)],
                        self.head_cpus, 0)
            self._wait_for_jobs(timeout)
            for i in range(self.workers):
                self.add_worker(f"worker{i + 1}", timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def add_worker(self, name: str, timeout: float = 300.0) -> Node:
        """Start one more worker node and wait until the cluster counts it alive."""
        node = self._start(name, ["--address", f"127.0.0.1:{self.port}"], self.cpus_per_node, self.gpus_per_node)
        self.wait_alive(len(self.nodes), timeout)
        return node

    def _wait_for_jobs(self, timeout: float) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.nodes[0].proc.poll() is not None:
                raise RuntimeError(f"ray start --head exited: {(self.temp / 'head.log').read_text()[-2000:]}")
            try:
                urllib.request.urlopen(f"{self.address}/api/version", timeout=2)
                return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"the job server at {self.address} did not answer in {timeout:.0f} s")

    def alive_nodes(self) -> int:
        """Alive nodes, as the job server reports them (no Ray driver in this process)."""
        import urllib.request

        with urllib.request.urlopen(f"{self.address}/nodes?view=summary", timeout=10) as r:
            data = json.loads(r.read())
        summary = data.get("data", {}).get("summary", [])
        return sum(1 for n in summary if n.get("raylet", {}).get("state") == "ALIVE")

    def wait_alive(self, count: int, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for node in self.nodes[1:]:
                if node.proc.poll() is not None:
                    raise RuntimeError(f"ray start ({node.name}) exited: "
                                       f"{(self.temp / f'{node.name}.log').read_text()[-2000:]}")
            with contextlib.suppress(OSError, ValueError):
                if self.alive_nodes() >= count:
                    return
            time.sleep(1.0)
        raise RuntimeError(f"fewer than {count} Ray nodes alive after {timeout:.0f} s")

    def pids(self) -> list[int]:
        return [pid for node in self.nodes for pid in node.pids()]

    def head_alive(self) -> bool:
        return bool(self.nodes) and self.nodes[0].name == "head" and self.nodes[0].proc.poll() is None

    def stop(self) -> int:
        """Stop every process this cluster started: worker nodes first, then the head
        (SIGTERM, then SIGKILL after 10 s); nothing else on the machine is touched. Returns
        how many of them are still alive afterwards (0), also kept in ``leftover``."""
        started = []
        for pid in self.pids():
            with contextlib.suppress(psutil.Error):
                started.append(psutil.Process(pid))
        for node in reversed(self.nodes):
            procs = []
            for pid in node.pids():
                with contextlib.suppress(psutil.Error):
                    procs.append(psutil.Process(pid))
            for p in procs:
                with contextlib.suppress(psutil.Error):
                    p.terminate()
            _, alive = psutil.wait_procs(procs, timeout=10)
            for p in alive:
                with contextlib.suppress(psutil.Error):
                    p.kill()
            psutil.wait_procs(alive, timeout=10)
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.proc.wait(timeout=10)
        self.nodes.clear()
        self.leftover = sum(1 for p in started if _alive(p))
        return self.leftover

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- the search --------------------------------------------------------------------------
#: A space of ~3,000 distinct MLP expansions (widths in steps of 0.01), so that 1,000
#: random proposals are 1,000 candidates without the space running dry.
SCALE_SPACE = {
    "family": "mlp",
    "knobs": {"kind": {"choices": ["width", "depth", "mixed"]}, "width": {"low": 1.01, "high": 4.0, "step": 0.01},
              "depth": {"low": 1, "high": 4}, "init": {"choices": ["masked", "random"]}},
    "constraints": {"max_params": 100000, "max_width": 4.0},
}


def scale_config(candidates: int, concurrent: int, space_path: str | Path, max_failures: int = 2,
                 gpus_per_trial: float = 0.0, tracking_uri: str | None = None, promoted: int = 4) -> dict[str, Any]:
    """The search of one run: tiny trials (an MLP on digits, a two-step screen, four training
    steps -- a fraction of an epoch), the random sampler (it proposes ``concurrent`` at once;
    TPE waits for every earlier candidate), ``promoted`` candidates trained, on the cluster
    the job runs on (``address: auto``)."""
    return {
        "name": f"scale-{candidates}x{concurrent}",
        "base": {"pretrain": {"family": "mlp", "dataset": "digits", "epochs": 3}},
        "space": str(space_path),
        "candidates": candidates,
        "sampler": {"name": "random", "seed": 0},
        "promotion": {"policy": "top_k", "k": promoted},
        "training": {"epochs": 1, "steps": 4, "batch_size": 64},
        "early_stopping": {"policy": "none"},
        "manifold": {"probe_size": 32, "steps": 2},
        "executor": {"name": "ray", "address": "auto", "cpus_per_trial": 1, "gpus_per_trial": gpus_per_trial,
                     "max_concurrent_trials": concurrent, "max_failures": max_failures},
        "tracking": {"enabled": True, **({"uri": tracking_uri} if tracking_uri else {})},
    }


def find_driver(out: Path, since: float = 0.0) -> psutil.Process | None:
    """The job's driver: ``python -m growsearch.cli run ... --out OUT`` (not the ``ray job
    submit`` command that names it, nor the shell the job server starts it with), started
    at ``since`` (epoch seconds) or later: not a driver orphaned by an earlier attempt."""
    for p in psutil.process_iter(["cmdline", "create_time"]):
        cmd = p.info["cmdline"] or []
        if cmd[1:4] == ["-m", "growsearch.cli", "run"] and str(out) in cmd and p.info["create_time"] >= since:
            return p
    return None


class DriverWatch:
    """Finds the job's driver (the ``growsearch.cli run`` process writing ``out``) and samples
    its CPU time and peak resident memory (``VmHWM``) every ``interval`` seconds; also notes
    when the first candidate is screened."""

    def __init__(self, out: Path, interval: float = 0.5) -> None:
        self.out, self.interval = out, interval
        self.since = time.time() - 1.0
        self.pid: int | None = None
        self.started_at: float | None = None  # the driver's start (epoch seconds)
        self.cpu_seconds = 0.0
        self.peak_rss = 0
        self.first_screened: float | None = None  # epoch seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _find(self) -> psutil.Process | None:
        return find_driver(self.out, self.since)

    def _screened(self) -> bool:
        for path in sorted((self.out / "candidates").glob("c*.json"))[:64]:
            with contextlib.suppress(OSError, ValueError):
                if json.loads(path.read_text()).get("stage") not in (None, "proposed"):
                    return True
        return False

    def _run(self) -> None:
        proc = None
        while not self._stop.is_set():
            if proc is None:
                proc = self._find()
                if proc is not None:
                    self.pid, self.started_at = proc.pid, proc.create_time()
            if proc is not None:
                try:
                    times = proc.cpu_times()
                    self.cpu_seconds = times.user + times.system
                    with open(f"/proc/{proc.pid}/status") as f:
                        hwm = next(line for line in f if line.startswith("VmHWM"))
                    self.peak_rss = max(self.peak_rss, int(hwm.split()[1]) * 1024)
                except (psutil.Error, OSError, StopIteration):
                    pass
            if self.first_screened is None and (self.out / "candidates").is_dir() and self._screened():
                self.first_screened = time.time()
            self._stop.wait(self.interval)

    def __enter__(self) -> DriverWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def start_job(cluster: Cluster, cfg_path: Path, out: Path, resume: bool = False) -> str:
    """``ray job submit --no-wait --address http://127.0.0.1:PORT -- python -m growsearch.cli
    run CFG --out OUT [--resume]`` (the recipe of examples/ray_cluster/); the job's id."""
    job_id = f"growsearch-{out.parent.name}-{int(time.time() * 1000)}"
    cmd = ["ray", "job", "submit", "--no-wait", "--submission-id", job_id, "--address", cluster.address, "--",
           sys.executable, "-m", "growsearch.cli", "run", str(cfg_path), "--out", str(out),
           *(["--resume"] if resume else [])]
    done = subprocess.run(cmd, env=_ray_env(), capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"ray job submit failed: {(done.stdout + done.stderr)[-2000:]}")
    return job_id


def job_status(cluster: Cluster, job_id: str) -> str | None:
    """The job's status from the job server's REST API (None when it does not answer)."""
    import urllib.request

    with contextlib.suppress(OSError, ValueError), \
            urllib.request.urlopen(f"{cluster.address}/api/jobs/{job_id}", timeout=30) as r:
        return json.loads(r.read()).get("status")
    return None


def wait_job(cluster: Cluster, job_id: str, timeout: float = 3600.0) -> dict[str, Any]:
    """Poll the job's status every 2 s until it ends (tailing its logs over a websocket, as a
    plain ``ray job submit`` does, drops on a loaded machine): its ``status`` (SUCCEEDED,
    FAILED, STOPPED) and ``logs``."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while (status := job_status(cluster, job_id)) not in ("SUCCEEDED", "FAILED", "STOPPED"):
        if not cluster.head_alive():
            raise ClusterLostError(f"the cluster's head node is gone while job {job_id} ran (stopped from outside: "
                              "`ray stop` stops every Ray instance of this user on the machine)")
        if time.monotonic() > deadline:
            raise RuntimeError(f"job {job_id} still running after {timeout:.0f} s")
        time.sleep(2.0)
    logs = ""
    with contextlib.suppress(OSError, ValueError), \
            urllib.request.urlopen(f"{cluster.address}/api/jobs/{job_id}/logs", timeout=30) as r:
        logs = json.loads(r.read()).get("logs", "")
    return {"status": status, "logs": logs}


def submit(cluster: Cluster, cfg_path: Path, out: Path, resume: bool = False,
           timeout: float = 3600.0) -> dict[str, Any]:
    """Submit the search as a Ray job and wait for it (:func:`start_job`, :func:`wait_job`)."""
    return wait_job(cluster, start_job(cluster, cfg_path, out, resume), timeout)


def _worker_logs(cluster: Cluster) -> int:
    """Python worker processes the cluster has started so far (one log file each)."""
    return len(list(cluster.temp.glob("session_latest/logs/python-core-worker-*.log")))


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def _records(out: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((out / "candidates").glob("c*.json"))]


def mlflow_children(out: Path, uri: str | None = None) -> dict[str, list[str]]:
    """Candidate id -> the stage tags of its MLflow child runs (one entry per child run), read
    from the store with MLflow's own client."""
    from mlflow.tracking import MlflowClient

    ledger = json.loads((out / "mlflow.json").read_text())
    uri = uri or f"sqlite:///{out.resolve() / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    entry = ledger[uri]
    children: dict[str, list[str]] = {}
    runs = client.search_runs([entry["experiment_id"]], filter_string=f"tags.`mlflow.parentRunId` = "
                              f"'{entry['parent']}'", max_results=50_000)
    for run in runs:
        cid = run.data.tags.get("growsearch.candidate", "?")
        children.setdefault(cid, []).append(run.data.tags.get("stage", ""))
    return children


def check_outcome(out: Path, candidates: int, uri: str | None = None) -> dict[str, Any]:
    """What a finished run must satisfy: every candidate on the leaderboard once with a final
    stage, and exactly one MLflow child run per candidate, whose stage tag matches its row."""
    import pandas as pd

    board = pd.read_csv(out / "leaderboard.csv")
    rows = board[board["candidate"] != "base"]
    expected = {f"c{i:04d}" for i in range(candidates)}
    children = mlflow_children(out, uri)
    stages = dict(zip(rows["candidate"], rows["stage"], strict=True))
    return {
        "leaderboard_rows": len(rows),
        "lost": len(expected - set(rows["candidate"])),
        "duplicated": int(rows["candidate"].duplicated().sum()) + int(rows.duplicated(["plan", "init"]).sum()),
        "unfinished": int((~rows["stage"].isin(["screened", "rejected", "failed", "completed", "stopped_early",
                                                "promoted"])).sum()),
        "mlflow_children": sum(len(v) for v in children.values()),
        "mlflow_duplicated": sum(len(v) - 1 for v in children.values() if len(v) > 1),
        "mlflow_match": set(children) == set(stages) and all(children[c] == [stages[c]] for c in stages),
    }


#: A Ray worker holding more unique memory than this has imported torch: a trial process
#: (idle pool workers hold ~60 MB).
TORCH_WORKER_BYTES = 150 * 2**20


def is_trial_process(name: str) -> bool:
    """Whether a process title is a Ray worker that runs (or ran) tasks or actors, not one
    of Ray's agents or the job supervisor."""
    return name.startswith("ray::") and name not in ("ray::DashboardAgent", "ray::RuntimeEnvAgent", "ray::IDLE") \
        and "JobSupervisor" not in name


class MemoryWatch:
    """Every ``interval`` s: the summed unique memory (USS) of the cluster's processes and the
    largest single Ray worker's (a trial process); stops the cluster at once if the machine's
    available memory falls below ``floor_gb`` (the machine is shared)."""

    def __init__(self, cluster: Cluster, interval: float = 2.0, floor_gb: float = 3.0) -> None:
        self.cluster, self.interval, self.floor = cluster, interval, floor_gb * 2**30
        self.peak_total = self.peak_worker = 0
        self.peak_workers = 0  # trial processes alive at once
        self.at_peak: dict[str, list[float]] = {}  # process title -> [count, MB] when the total peaked
        self.low_memory = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            total = workers = 0
            parts: dict[str, list[float]] = {}
            for pid in self.cluster.pids():
                try:
                    p = psutil.Process(pid)
                    uss = p.memory_full_info().uss
                    name = p.name()
                    if name.startswith("python"):  # the driver and Ray's own Python daemons: by what they run
                        name = " ".join(p.cmdline()[1:4])[-60:]
                except psutil.Error:
                    continue
                total += uss
                part = parts.setdefault(name, [0, 0.0])
                part[0] += 1
                part[1] += uss / 2**20
                if is_trial_process(name) and uss > TORCH_WORKER_BYTES:
                    self.peak_worker = max(self.peak_worker, uss)
                    workers += 1
            if total > self.peak_total:
                self.peak_total, self.at_peak = total, parts
            self.peak_workers = max(self.peak_workers, workers)
            if psutil.virtual_memory().available < self.floor:
                self.low_memory = True
                self.cluster.stop()
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def write_inputs(work: Path, candidates: int, concurrent: int, **changes: Any) -> Path:
    """The space and config files of one run in ``work``; the config's path."""
    import yaml

    work.mkdir(parents=True, exist_ok=True)
    space = work / "space.yaml"
    space.write_text(yaml.safe_dump(SCALE_SPACE))
    cfg_path = work / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(scale_config(candidates, concurrent, space, **changes)))
    return cfg_path


def measure_run(cluster: Cluster, work: Path, candidates: int, concurrent: int,
                tracking_uri: str | None = None) -> dict[str, Any]:
    """One measured search, submitted as a Ray job; its figures (see the module docstring)."""
    cfg_path = write_inputs(work, candidates, concurrent, tracking_uri=tracking_uri)
    out = work / "out"
    workers_before = _worker_logs(cluster)
    submitted = time.time()
    with DriverWatch(out) as driver, MemoryWatch(cluster) as memory:
        job = submit(cluster, cfg_path, out)
    wall = time.time() - submitted
    if job["status"] != "SUCCEEDED" or memory.low_memory:
        raise RuntimeError(f"the job ended {job['status']} (low memory: {memory.low_memory}): "
                           f"{job['logs'][-3000:]}")
    records = _records(out)
    screened = [r for r in records if "screen_seconds" in r]
    screen_work = sum(r["screen_seconds"] for r in screened)
    ends = [p.stat().st_mtime for p in (out / "candidates").glob("c*.json")]
    ledger = json.loads((out / "mlflow.json").read_text())
    uri = tracking_uri or f"sqlite:///{out.resolve() / 'mlflow.db'}"
    timing = ledger[uri].get("timing", {})
    # the screening phase: from the driver's first screened candidate to promotion.json
    screening_end = (out / "promotion.json").stat().st_mtime
    screening_start = driver.first_screened or submitted
    screening_wall = screening_end - screening_start
    slots = concurrent
    orchestration = max(1e-9, screening_wall - screen_work / slots)
    n = len(records)
    result = {
        "candidates": n, "concurrent_trials": concurrent, "nodes": len(cluster.nodes),
        "cpus_per_node": cluster.cpus_per_node, "tracking": "mlflow server" if tracking_uri else "sqlite",
        "wall_seconds": wall, "screening_wall_seconds": screening_wall,
        "screen_work_seconds": screen_work, "mean_screen_seconds": screen_work / max(1, len(screened)),
        "candidates_per_min_orchestration": 60 * n / orchestration,
        "driver_cpu_seconds": driver.cpu_seconds, "driver_cpu_ms_per_candidate": 1000 * driver.cpu_seconds / n,
        "candidates_per_min_driver_cpu": 60 * n / max(1e-9, driver.cpu_seconds),
        "driver_peak_rss_mb": driver.peak_rss / 2**20, "driver_peak_rss_kb_per_candidate": driver.peak_rss / 1024 / n,
        "first_screened_seconds_from_submit": (driver.first_screened or submitted) - submitted,
        "first_screened_seconds_from_driver_start": (driver.first_screened or 0) - (driver.started_at or 0),
        "journal_bytes_per_candidate": _size(out / "study.journal") / n,
        "mlflow_bytes_per_candidate": (_size(out / "mlflow.db") + _size(out / "mlartifacts")) / n
        if not tracking_uri else None,
        "ledger_bytes_per_candidate": _size(out / "mlflow.json") / n,
        "records_bytes_per_candidate": sum(p.stat().st_size for p in (out / "candidates").glob("c*.json")) / n,
        "mlflow_ms_per_child_run": 1000 * timing.get("seconds", float("nan")) / max(1, timing.get("children", 0)),
        "mlflow_calls": timing.get("calls"),
        "cluster_peak_uss_mb": memory.peak_total / 2**20, "trial_worker_peak_uss_mb": memory.peak_worker / 2**20,
        "trial_workers_at_once": memory.peak_workers,
        "worker_processes_started": _worker_logs(cluster) - workers_before,
        "cluster_at_peak": {k: [int(c), round(mb)] for k, (c, mb) in
                            sorted(memory.at_peak.items(), key=lambda kv: -kv[1][1])[:12]},
        "last_record_seconds": max(ends) - submitted if ends else None,
        "outcome": check_outcome(out, candidates, uri if tracking_uri else None),
    }
    return result


# -- faults ------------------------------------------------------------------------------
def _screened_count(out: Path) -> int:
    count = 0
    for path in (out / "candidates").glob("c*.json"):
        with contextlib.suppress(OSError, ValueError):
            count += json.loads(path.read_text()).get("stage") not in (None, "proposed")
    return count


def _trial_processes(node: Node) -> int:
    """Trial processes (Ray workers holding torch) of ``node`` now."""
    busy = 0
    for pid in node.pids():
        with contextlib.suppress(psutil.Error):
            p = psutil.Process(pid)
            busy += is_trial_process(p.name()) and p.memory_info().rss > TORCH_WORKER_BYTES
    return busy


def _wait_until(check: Any, cluster: Cluster, job_id: str, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if job_status(cluster, job_id) in ("SUCCEEDED", "FAILED", "STOPPED"):
            raise RuntimeError(f"the job ended before {what}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.2)


def leaderboard_rows(out: Path) -> list[list[Any]]:
    """The leaderboard's candidates, plans, inits, stages, sizes and epochs, sorted by candidate:
    what an interrupted and resumed search must reproduce."""
    import pandas as pd

    board = pd.read_csv(out / "leaderboard.csv").sort_values("candidate")
    return board[["candidate", "plan", "init", "stage", "params", "epochs"]].fillna("").values.tolist()


def node_loss(cluster: Cluster, work: Path, candidates: int, concurrent: int, at: float = 0.3,
              timeout: float = 1800.0) -> dict[str, Any]:
    """Kill a worker node (every process of it, SIGKILL) once ``at`` of the candidates are
    screened and screening trials run on it; the job must still finish with every candidate
    once, the killed trials retried on the other nodes (``retries`` in their records)."""
    cfg_path = write_inputs(work, candidates, concurrent, max_failures=2)
    out = work / "out"
    job_id = start_job(cluster, cfg_path, out)
    workers = cluster.nodes[1:]
    _wait_until(lambda: _screened_count(out) >= at * candidates and any(_trial_processes(n) for n in workers),
                cluster, job_id, timeout, "screening trials on a worker node")
    victim = max(workers, key=_trial_processes)
    in_flight = _trial_processes(victim)
    screened_before = _screened_count(out)
    killed = victim.kill()
    cluster.nodes.remove(victim)
    job = wait_job(cluster, job_id, timeout)
    if job["status"] != "SUCCEEDED":
        raise RuntimeError(f"the job did not survive the node loss ({job['status']}): {job['logs'][-3000:]}")
    records = _records(out)
    return {"fault": f"worker node {victim.name} killed (SIGKILL to its {len(killed)} processes) with "
                     f"{in_flight} trial process(es) on it, after {screened_before} of {candidates} candidates",
            "trial_processes_killed": in_flight, "screened_before_kill": screened_before,
            "retried_candidates": sum(1 for r in records if r.get("retries")),
            "max_failures": 2, "job": job["status"], **check_outcome(out, candidates),
            "leaderboard": leaderboard_rows(out)}


def driver_loss(cluster: Cluster, work: Path, candidates: int, concurrent: int, at: float = 0.4,
                timeout: float = 1800.0) -> dict[str, Any]:
    """``kill -9`` the job's driver once ``at`` of the candidates are screened (trials in
    flight), then resubmit the same job with ``--resume``: every candidate once, and the
    leaderboard rows returned for comparison with an uninterrupted run."""
    cfg_path = write_inputs(work, candidates, concurrent, max_failures=2)
    out = work / "out"
    job_id = start_job(cluster, cfg_path, out)
    _wait_until(lambda: _screened_count(out) >= at * candidates, cluster, job_id, timeout, "the driver screening")
    driver = find_driver(out)
    if driver is None:
        raise RuntimeError("the job's driver process was not found")
    screened_before = _screened_count(out)
    os.kill(driver.pid, signal.SIGKILL)
    killed = wait_job(cluster, job_id, timeout)
    leaderboard_after_kill = (out / "leaderboard.csv").exists()
    resumed = submit(cluster, cfg_path, out, resume=True, timeout=timeout)
    if resumed["status"] != "SUCCEEDED":
        raise RuntimeError(f"the resumed job ended {resumed['status']}: {resumed['logs'][-3000:]}")
    return {"fault": f"driver (pid {driver.pid}) killed with SIGKILL after {screened_before} of {candidates} "
                     "candidates, job resubmitted with --resume",
            "screened_before_kill": screened_before, "killed_job": killed["status"],
            "leaderboard_after_kill": leaderboard_after_kill, "resumed_job": resumed["status"],
            **check_outcome(out, candidates), "leaderboard": leaderboard_rows(out)}


def run_faults(candidates: int = 40, concurrent: int = 4, workers: int = 2, cpus_per_node: int = 32,
               workdir: str | Path | None = None) -> dict[str, Any]:
    """The two cluster faults on one cluster of ``1 + workers`` nodes (a fresh worker node
    replaces the killed one before the driver loss), and the verdict: nothing lost or
    duplicated, MLflow children equal to the leaderboard, the resumed leaderboard identical
    to the node-loss run's (whose retries are invisible in its outcome)."""
    work = Path(workdir or tempfile.mkdtemp(prefix="growsearch-scale-faults-"))
    start = time.perf_counter()
    with Cluster(workers=workers, cpus_per_node=cpus_per_node) as cluster:
        node = node_loss(cluster, work / "node-loss", candidates, concurrent)
        cluster.add_worker(f"worker{workers + 1}")
        driver = driver_loss(cluster, work / "driver-loss", candidates, concurrent)
    node["leftover_processes"] = cluster.leftover
    driver["identical_to_uninterrupted"] = driver.pop("leaderboard") == node.pop("leaderboard")
    return {"candidates": candidates, "concurrent_trials": concurrent, "nodes": 1 + workers,
            "cpus_per_node": cpus_per_node, "node_loss": node, "driver_loss": driver,
            "seconds": time.perf_counter() - start, "workdir": str(work)}


# -- fractional GPUs ------------------------------------------------------------------------
def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one moment."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


def gpu_packing(candidates: int = 16, concurrent: int = 8, gpus_per_trial: float = 0.25, workers: int = 2,
                workdir: str | Path | None = None) -> dict[str, Any]:
    """Fractional GPU requests on worker nodes that declare one GPU each (``--num-gpus 1``, on
    a machine without one): Ray must pack ``1 / gpus_per_trial`` trials per GPU, each trial
    sees the GPU Ray assigned in ``CUDA_VISIBLE_DEVICES`` and, with no CUDA device in its
    torch, screens on the CPU. Per GPU: the most trials that held it at once (from the
    trials' own start and end times)."""
    work = Path(workdir or tempfile.mkdtemp(prefix="growsearch-scale-gpu-"))
    cfg_path = write_inputs(work, candidates, concurrent, gpus_per_trial=gpus_per_trial, promoted=2)
    out = work / "out"
    with Cluster(workers=workers, cpus_per_node=32, gpus_per_node=1) as cluster:
        job = submit(cluster, cfg_path, out)
    if job["status"] != "SUCCEEDED":
        raise RuntimeError(f"the job ended {job['status']}: {job['logs'][-3000:]}")
    records = [r for r in _records(out) if r.get("stage") not in ("rejected", None)]
    per_gpu: dict[str, list[tuple[float, float]]] = {}
    for r in records:
        gpu = r.get("gpu") or {}
        if gpu:
            per_gpu.setdefault(f"{gpu['node'][:8]}/{','.join(gpu['ids'])}", []).append((gpu["start"], gpu["end"]))
    visible_ok = all(r.get("gpu") and r["gpu"]["cuda_visible_devices"] == ",".join(r["gpu"]["ids"])
                     for r in records)
    return {"candidates": candidates, "concurrent_trials": concurrent, "gpus_per_trial": gpus_per_trial,
            "nodes": 1 + workers, "gpus_per_node": 1,
            "trials_with_a_gpu": sum(1 for r in records if r.get("gpu")), "trials": len(records),
            "gpus_used": len(per_gpu), "most_trials_on_one_gpu_at_once": max(map(_max_overlap, per_gpu.values()),
                                                                              default=0),
            "cuda_visible_devices_match": visible_ok,
            "devices": sorted({r["gpu"]["device"] for r in records if r.get("gpu")}),
            "leftover_processes": cluster.leftover,
            **check_outcome(out, candidates)}


# -- the benchmark ---------------------------------------------------------------------------
def fits(concurrent: int, worker_mb: float, base_mb: float, budget_gb: float) -> bool:
    """Whether ``concurrent`` trial processes of ``worker_mb`` each, beside the cluster's own
    ``base_mb``, fit in ``budget_gb``."""
    return base_mb + concurrent * worker_mb <= budget_gb * 1024


def start_mlflow_server(work: Path) -> tuple[subprocess.Popen, str]:
    """A real ``mlflow server`` on 127.0.0.1 (SQLite backend in ``work``), in a session of its
    own; returns it and its URI once ``/health`` answers."""
    import urllib.request

    port = free_port()
    work.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
           "--backend-store-uri", f"sqlite:///{work / 'server.db'}", "--artifacts-destination", str(work / "art")]
    log = open(work / "mlflow-server.log", "w")  # noqa: SIM115 -- closed with the process
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited: {(work / 'mlflow-server.log').read_text()[-2000:]}")
        try:
            urllib.request.urlopen(uri + "/health", timeout=2)
            return proc, uri
        except OSError:
            time.sleep(0.5)
    stop_process_group(proc)
    raise RuntimeError("mlflow server did not answer in 120 s")


def stop_process_group(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL, to the session this benchmark started ``proc`` in."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=10)
            return
        except subprocess.TimeoutExpired:
            continue


#: The runs of the full benchmark, (candidates, concurrent trials): growth from 100 to 1,000
#: candidates at 16 concurrent trials (the most whose processes fit in 8 GB here), 100 at 8,
#: 32 and 64 (skipped, with the numbers, where they do not fit).
DEFAULT_RUNS = ((100, 8), (100, 16), (300, 16), (1000, 16), (100, 32), (100, 64))


def run_scale_benchmark(runs: tuple[tuple[int, int], ...] = DEFAULT_RUNS, workers: int = 2, cpus_per_node: int = 32,
                        memory_budget_gb: float = 8.0,
                        server_size: int | None = 100, faults: bool = True, gpu: bool = True,
                        workdir: str | Path | None = None, progress: Any = print,
                        partial: Any = None) -> dict[str, Any]:
    """Every ``(candidates, concurrent trials)`` run whose trial processes fit in
    ``memory_budget_gb`` (the first run measures one trial process; the others are skipped
    with the numbers), one run against a real ``mlflow server`` (``server_size`` candidates
    at the first run's concurrency), then the faults and the fractional-GPU packing, each on
    a cluster of its own. ``partial(result)`` is called after each part (to save what is done)."""
    work = Path(workdir or tempfile.mkdtemp(prefix="growsearch-scale-"))
    start = time.perf_counter()
    result: dict[str, Any] = {
        "benchmark": "scale", "machine": {"cpus": os.cpu_count(), "memory_gb": psutil.virtual_memory().total / 2**30,
                                          "load_average_at_start": os.getloadavg()},
        "memory_budget_gb": memory_budget_gb, "revision": git_revision(), "runs": [], "skipped": []}
    cluster = Cluster(workers=workers, cpus_per_node=cpus_per_node).start()

    def measured(name: str, size: int, concurrent: int, uri: str | None = None) -> dict[str, Any]:
        """One run; once more on a fresh cluster if someone else stopped this one meanwhile."""
        nonlocal cluster
        try:
            return measure_run(cluster, work / name, size, concurrent, tracking_uri=uri)
        except ClusterLostError as exc:
            progress(f"{exc}; starting a fresh cluster and running {name} again")
            cluster.stop()
            orphan = find_driver(work / name / "out")  # our job's driver outlives its cluster: stopped
            if orphan is not None:
                with contextlib.suppress(psutil.Error):
                    orphan.kill()
            cluster = Cluster(workers=workers, cpus_per_node=cpus_per_node).start()
            result.setdefault("cluster_restarts", []).append(f"{name}: {exc}")
            shutil.rmtree(work / name, ignore_errors=True)
            return measure_run(cluster, work / name, size, concurrent, tracking_uri=uri)

    try:
        worker_mb = base_mb = None
        for size, concurrent in runs:
            if worker_mb is not None and not fits(concurrent, worker_mb, base_mb, memory_budget_gb):
                result["skipped"].append({
                    "candidates": size, "concurrent_trials": concurrent,
                    "reason": f"{concurrent} trial processes x {worker_mb:.0f} MB + {base_mb:.0f} MB of cluster "
                              f"and driver = {(base_mb + concurrent * worker_mb) / 1024:.1f} GB > the "
                              f"{memory_budget_gb:g} GB budget"})
                progress(f"skipped {size} x {concurrent}: {result['skipped'][-1]['reason']}")
                continue
            progress(f"run: {size} candidates, {concurrent} concurrent trials")
            run = measured(f"run-{size}x{concurrent}", size, concurrent)
            run["load_average_after"] = os.getloadavg()
            result["runs"].append(run)
            if partial:
                partial(result)
            progress(json.dumps({k: v for k, v in run.items() if k != "outcome"}))
            if worker_mb is None:
                worker_mb = run["trial_worker_peak_uss_mb"]
                # the driver runs inside the cluster (under the job supervisor): counted in the peak
                base_mb = run["cluster_peak_uss_mb"] - run["trial_workers_at_once"] * worker_mb
                result["trial_worker_uss_mb"], result["cluster_base_uss_mb"] = worker_mb, base_mb
                result["largest_concurrency_that_fits"] = int((memory_budget_gb * 1024 - base_mb) // worker_mb)
        if server_size:
            concurrent = runs[0][1]
            server, uri = start_mlflow_server(work / "mlflow-server")
            try:
                progress(f"run: {server_size} candidates, {concurrent} concurrent, mlflow server {uri}")
                run = measured(f"server-{server_size}x{concurrent}", server_size, concurrent, uri)
                run["load_average_after"] = os.getloadavg()
                result["runs"].append(run)
            finally:
                stop_process_group(server)
    finally:
        cluster.stop()
    if faults:
        progress("faults: node loss, driver loss")
        result["faults"] = run_faults(workdir=work / "faults")
        if partial:
            partial(result)
    if gpu:
        progress("fractional GPUs")
        result["gpu"] = gpu_packing(workdir=work / "gpu")
    result["seconds"] = time.perf_counter() - start
    result["workdir"] = str(work)
    return result


# -- rendering (growsearch bench table) --------------------------------------------------------
TIMES, MINUS = "\u00d7", "\u2212"  # for the markdown (ruff's RUF001 flags them as literals)


def _n(value: float | None, fmt: str, unit: str = "") -> str:
    """A figure for the table; a withheld one (None) as a dash."""
    return "—" if value is None else f"{value:{fmt}}{unit}"


def merge_results(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Several ``bench scale`` results (e.g. the 1,000-candidate run measured apart) as one:
    the first's machine, faults and GPU parts, everyone's runs and skips, every command."""
    merged = {**results[0], "runs": [r for res in results for r in res["runs"]],
              "skipped": [s for res in results for s in res.get("skipped", [])],
              "command": " && ".join(res.get("command", "growsearch bench scale") for res in results),
              "notes": [res["note"] for res in results if res.get("note")]
              + [f"run again on a fresh cluster after its cluster was stopped from outside: {r}"
                 for res in results for r in res.get("cluster_restarts", [])]}
    for res in results[1:]:
        for key in ("faults", "gpu", "trial_worker_uss_mb", "cluster_base_uss_mb", "largest_concurrency_that_fits"):
            merged.setdefault(key, res.get(key))
    return {k: v for k, v in merged.items() if v is not None}


def _growth_runs(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The SQLite runs at the concurrency measured at the most sizes: the growth series."""
    runs = [r for r in result["runs"] if r["tracking"] == "sqlite"]
    if not runs:
        return []
    by_concurrency: dict[int, list[dict[str, Any]]] = {}
    for r in runs:
        by_concurrency.setdefault(r["concurrent_trials"], []).append(r)
    return sorted(max(by_concurrency.values(), key=len), key=lambda r: r["candidates"])


def growth_factors(result: dict[str, Any]) -> dict[str, float]:
    """Per-candidate cost at the largest size over the smallest, of the growth series (1.0:
    linear total cost; above 1: the total grows faster than linearly)."""
    runs = _growth_runs(result)
    if len(runs) < 2:
        return {}
    small, large = runs[0], runs[-1]
    keys = ("driver_cpu_ms_per_candidate", "journal_bytes_per_candidate", "mlflow_bytes_per_candidate",
            "ledger_bytes_per_candidate", "mlflow_ms_per_child_run")
    return {k: large[k] / small[k] for k in keys if small.get(k) and large.get(k) is not None}


def scale_table(result: dict[str, Any]) -> list[str]:
    """The markdown section of a ``growsearch bench scale`` result."""
    m = result["machine"]
    lines = ["## Scale: hundreds of candidates on a multi-node Ray cluster", "",
             f"`{result.get('command', 'growsearch bench scale')}` — a head and worker nodes started with "
             f"`ray start` on 127.0.0.1 (each worker declaring {result['runs'][0]['cpus_per_node']} logical CPUs and "
             "4 `accel`), searches submitted with `ray job submit -- growsearch run` (tiny trials: an MLP on digits, "
             "a two-step screen, 4 training steps of 4 promoted candidates), on a machine of "
             f"{m['cpus']} cores and {m['memory_gb']:.0f} GB **shared with other work** (load average "
             f"{m['load_average_at_start'][0]:.1f} at the start: every time below was measured under contention). "
             f"Orchestration = screening wall {MINUS} trial work / slots; driver = the job's `growsearch run` "
             "process.", "",
             f"| candidates {TIMES} concurrent | store | cand./min orchestration | cand./min (driver CPU bound) "
             "| driver CPU / cand. | driver peak RSS | journal / cand. | MLflow store / cand. | MLflow / child run "
             "| first screened | worker processes started | load after | lost / dup. |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    nan = float("nan")
    for r in result["runs"]:
        store = "—" if r["mlflow_bytes_per_candidate"] is None else f"{r['mlflow_bytes_per_candidate'] / 1024:.0f} KB"
        o = r["outcome"]
        lines.append(f"| {r['candidates']} {TIMES} {r['concurrent_trials']} | {r['tracking']} "
                     f"| {r['candidates_per_min_orchestration']:.0f} | {_n(r['candidates_per_min_driver_cpu'], '.0f')} "
                     f"| {_n(r['driver_cpu_ms_per_candidate'], '.0f', ' ms')} "
                     f"| {_n(r['driver_peak_rss_mb'], '.0f', ' MB')} "
                     f"| {r['journal_bytes_per_candidate'] / 1024:.1f} KB | {store} "
                     f"| {r['mlflow_ms_per_child_run']:.0f} ms | {r['first_screened_seconds_from_submit']:.0f} s "
                     f"| {r.get('worker_processes_started', '—')} | {r.get('load_average_after', [nan])[0]:.0f} "
                     f"| {o['lost']} / {o['duplicated'] + o['mlflow_duplicated']} |")
    lines.append("")
    lines += [f"- {note}" for note in result.get("notes", [])]
    for s in result.get("skipped", []):
        lines.append(f"- not run: {s['candidates']} {TIMES} {s['concurrent_trials']}: {s['reason']}.")
    if "trial_worker_uss_mb" in result:
        lines.append(f"- one trial process (a Ray worker that imported torch and screened) holds "
                     f"{result['trial_worker_uss_mb']:.0f} MB of its own memory; the cluster's other processes "
                     f"and the driver {result['cluster_base_uss_mb']:.0f} MB: at most "
                     f"{result['largest_concurrency_that_fits']} concurrent trials fit in "
                     f"{result['memory_budget_gb']:g} GB.")
    factors = growth_factors(result)
    if factors:
        runs = _growth_runs(result)
        lines.append(f"- growth {runs[0]['candidates']} → {runs[-1]['candidates']} candidates (per-candidate cost at "
                     "the largest size / at the smallest; 1.0 = linear): "
                     + ", ".join(f"{k.replace('_', ' ')} {TIMES}{v:.2f}" for k, v in factors.items())
                     + ". Figure: `docs/scale.png`.")
    lines.append("")
    faults = result.get("faults")
    if faults:
        n, d = faults["node_loss"], faults["driver_loss"]
        lines += [f"Faults ({faults['nodes']} nodes, {faults['candidates']} candidates, "
                  f"{faults['concurrent_trials']} concurrent, {faults['seconds']:.0f} s):", "",
                  "| fault | lost | duplicated | MLflow children = leaderboard | retried | identical after resume |",
                  "|---|---|---|---|---|---|",
                  f"| {n['fault']} | {n['lost']} | {n['duplicated'] + n['mlflow_duplicated']} | {n['mlflow_match']} "
                  f"| {n['retried_candidates']} candidate(s) (max_failures {n['max_failures']}) | — |",
                  f"| {d['fault']} | {d['lost']} | {d['duplicated'] + d['mlflow_duplicated']} | {d['mlflow_match']} "
                  f"| — | {d['identical_to_uninterrupted']} |", ""]
    gpu = result.get("gpu")
    if gpu:
        lines += [f"Fractional GPUs: {gpu['candidates']} candidates, `gpus_per_trial: {gpu['gpus_per_trial']}`, "
                  f"{gpu['concurrent_trials']} concurrent, {gpu['nodes'] - 1} worker nodes declaring "
                  f"`--num-gpus {gpu['gpus_per_node']}` (no GPU on the machine): {gpu['trials_with_a_gpu']} of "
                  f"{gpu['trials']} trials held a GPU share, CUDA_VISIBLE_DEVICES matched Ray's assignment: "
                  f"{gpu['cuda_visible_devices_match']}, {gpu['gpus_used']} GPU(s) used, at most "
                  f"{gpu['most_trials_on_one_gpu_at_once']} trials on one GPU at once, devices {gpu['devices']} "
                  "(the CPU fallback).", ""]
    return lines


def scale_figure(result: dict[str, Any], path: Path) -> Path | None:
    """Cost vs candidates (the growth series): per-candidate driver CPU, peak driver memory,
    journal and MLflow bytes per candidate, MLflow time per child run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = _growth_runs(result)
    if len(runs) < 2:
        return None
    xs = [r["candidates"] for r in runs]
    nan = float("nan")
    panels = [("driver CPU per candidate (ms)", [r["driver_cpu_ms_per_candidate"] or nan for r in runs]),
              ("driver peak RSS (MB)", [r["driver_peak_rss_mb"] or nan for r in runs]),
              ("bytes per candidate (KB)", None),
              ("MLflow time per child run (ms)", [r["mlflow_ms_per_child_run"] for r in runs])]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    for ax, (title, ys) in zip(axes, panels, strict=True):
        if ys is None:
            for key, label in (("journal_bytes_per_candidate", "Optuna journal"),
                               ("mlflow_bytes_per_candidate", "MLflow store"),
                               ("records_bytes_per_candidate", "records"),
                               ("ledger_bytes_per_candidate", "MLflow ledger")):
                ax.plot(xs, [r[key] / 1024 for r in runs], marker="o", label=label)
            ax.legend(fontsize=7)
        else:
            ax.plot(xs, ys, marker="o")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("candidates")
        ax.set_xscale("log")
        ax.set_ylim(bottom=0)
    fig.suptitle(f"growsearch on a {runs[0]['nodes']}-node Ray cluster, {runs[0]['concurrent_trials']} concurrent "
                 "trials: cost vs candidates (flat = linear total)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
