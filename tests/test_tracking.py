"""MLflow tracking against a real SQLite store and a real `mlflow server` on 127.0.0.1."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import mlflow
import pytest
import torch
from conftest import tiny_search_config
from mlflow.tracking import MlflowClient

from growsearch.cli import main
from growsearch.search import load_config, run_search
from growsearch.search.engine import Progress
from growsearch.tracking import default_uri, load_model_from_run

pytestmark = pytest.mark.slow

TRACKED = tiny_search_config(name="tracked", promotion={"policy": "top_k", "k": 3},
                             training={"epochs": 4, "batch_size": 64}, tracking={"enabled": True},
                             early_stopping={"policy": "asha", "grace_epochs": 1, "reduction_factor": 3})


def runs_of(uri, name="tracked"):
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(name)
    runs = client.search_runs([exp.experiment_id], order_by=["metrics.manifold_metric DESC"])
    parents = [r for r in runs if r.data.tags.get("growsearch.role") == "search"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return client, parents, children


def check_search_runs(uri, out, n=5):
    client, parents, children = runs_of(uri)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0]
    assert len(children) == n
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert sorted(c.data.tags["growsearch.candidate"] for c in children) == [f"c{i:04d}" for i in range(n)]
    # statuses final and right for the stage
    expected = {"completed": "FINISHED", "screened": "FINISHED", "rejected": "FINISHED",
                "stopped_early": "KILLED", "failed": "FAILED"}
    for c in children:
        assert c.info.status == expected[c.data.tags["stage"]], c.data.tags
    # the comparison view: children sortable by manifold metric, with params and accuracy
    metrics = [c.data.metrics["manifold_metric"] for c in children if "manifold_metric" in c.data.metrics]
    assert metrics == sorted(metrics, reverse=True)
    trained = [c for c in children if c.data.tags["stage"] in ("completed", "stopped_early")]
    assert trained and all({"final_accuracy", "params", "val_score", "test_score"} <= set(c.data.metrics)
                           for c in trained)
    assert all("plan.width" in c.data.params or "plan.depth" in c.data.params for c in children)
    for c in trained:  # per-epoch curves with steps, validation (decisions) and test (reported)
        history = client.get_metric_history(c.info.run_id, "test_accuracy")
        assert [m.step for m in history] == list(range(1, len(history) + 1))
        assert [m.step for m in client.get_metric_history(c.info.run_id, "val_accuracy")] == [m.step for m in history]
        assert len(history) == json.loads((out / "candidates" / f"{c.data.tags['growsearch.candidate']}.json")
                                          .read_text())["epochs"]
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"leaderboard.csv", "leaderboard.md", "plots", "best_model_checkpoint", "config.json"} <= artifacts
    return client, parent, children


def test_sqlite_store_parent_children_statuses_artifacts_and_resume(tmp_path):
    out = tmp_path / "run"
    run_search(load_config(TRACKED), out)
    uri = default_uri(out)
    assert (out / "mlflow.db").exists()
    _, parent, children = check_search_runs(uri, out)
    assert any(c.info.status == "KILLED" for c in children)  # ASHA stopped one of the three
    # the best model comes back both ways
    mlflow.set_tracking_uri(uri)
    model = mlflow.pytorch.load_model(f"runs:/{parent.info.run_id}/best_model")
    ours, spec, meta = load_model_from_run(parent.info.run_id, uri)
    assert spec["family"] == "mlp"
    x = torch.randn(2, 8, 8)
    assert torch.allclose(model(x), ours.eval()(x), atol=1e-6)
    assert meta["candidate"] == parent.data.tags["growsearch.best_candidate"]
    # resuming reuses the parent and never duplicates a child
    cfg = dict(TRACKED, candidates=7)
    with pytest.raises(Exception, match="differs"):
        run_search(load_config(cfg), out, resume=True)
    run_search(load_config(TRACKED), out, resume=True)
    check_search_runs(uri, out)


def test_search_from_an_empty_directory_writes_only_its_results_folder(tmp_path):
    """The results folder is self-contained (MLflow's artifacts inside it, nothing in the
    current directory), the experiment opens in MLflow's model-training view, and MLflow's
    INFO lines stay quiet without --debug."""
    cwd = tmp_path / "empty"
    cwd.mkdir()
    config = tmp_path / "tiny.yaml"
    config.write_text(json.dumps(tiny_search_config(name="tracked", candidates=2, tracking={"enabled": True},
                                                    promotion={"policy": "top_k", "k": 1})))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    run = subprocess.run([sys.executable, "-m", "growsearch.cli", "run", str(config), "--out", "out"], cwd=cwd,
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert sorted(os.listdir(cwd)) == ["out"]
    logs = run.stdout + run.stderr
    assert "INFO" not in logs and "Creating initial MLflow database tables" not in logs, logs[:2000]
    out = cwd / "out"
    client = MlflowClient(default_uri(out))
    exp = client.get_experiment_by_name("tracked")
    assert exp.tags.get("mlflow.experimentKind") == "custom_model_development"
    assert exp.artifact_location == (out / "mlartifacts").resolve().as_uri()
    parent = next(r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("growsearch.role") == "search")
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {"leaderboard.csv", "best_model_checkpoint"}
    assert any((out / "mlartifacts").rglob("leaderboard.csv"))


def test_failed_candidates_are_failed_runs(tmp_path):
    out = tmp_path / "run"
    cfg = dict(TRACKED, training={"epochs": 2, "lr": 1e12, "grad_clip": None, "optimizer": "sgd", "momentum": 0.0},
               reference=False)  # a diverging reference stops the search (tests/test_search.py)
    run_search(load_config(cfg), out)
    _, _, children = runs_of(default_uri(out))
    failed = [c for c in children if c.data.tags["stage"] == "failed"]
    assert failed and all(c.info.status == "FAILED" and "loss became" in c.data.tags["reason"] for c in failed)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A real `mlflow server` process on 127.0.0.1."""

    def __init__(self, tmp_path):
        self.port = _free_port()
        self.store = f"sqlite:///{tmp_path / 'server.db'}"
        self.artifacts = tmp_path / "server-artifacts"
        self.proc = None

    @property
    def uri(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        self.proc = subprocess.Popen([shutil.which("mlflow"), "server", "--backend-store-uri", self.store,
                                      "--artifacts-destination", str(self.artifacts), "--host", "127.0.0.1",
                                      "--port", str(self.port), "--workers", "1"], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"{self.uri}/health", timeout=2)
                return self
            except OSError:
                time.sleep(0.5)
        raise RuntimeError("mlflow server did not start")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # gone, like a crashed server
            self.proc.wait()


@pytest.fixture()
def server(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    srv = Server(tmp_path).start()
    yield srv
    srv.stop()


def test_remote_server_and_an_outage_mid_search(tmp_path, server):
    class KillServerAtTraining(Progress):
        def stage(self, name, total):
            if name == "training":
                server.stop()

    out = tmp_path / "run"
    cfg = dict(TRACKED, tracking={"uri": server.uri})
    run_search(load_config(cfg), out, progress=KillServerAtTraining())
    # the results folder is complete although the server died before training
    board = (out / "leaderboard.csv").read_text()
    assert board.count("\nc000") == 5 and (out / "best" / "model.safetensors").exists()
    server.start()
    _, _, children = runs_of(server.uri)
    assert len(children) == 5
    # the gap: no child is past screening (a proposal over the space's limits is rejected there, for good)
    assert all(c.data.tags.get("stage") in ("screened", "promoted", "rejected") for c in children)
    assert any(c.data.tags.get("stage") != "rejected" for c in children)
    assert main(["sync", str(out)]) == 0
    check_search_runs(server.uri, out)
    assert main(["sync", str(out)]) == 0  # idempotent: nothing duplicated
    check_search_runs(server.uri, out)


def test_unreachable_tracking_uri_fails_before_compute(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    import yaml

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(dict(TRACKED, tracking={"uri": f"http://127.0.0.1:{_free_port()}"})))
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out)]) == 2
    assert "tracking.uri: cannot reach the MLflow tracking server" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())  # nothing written, nothing computed


def _port_is_free(port):
    """Nothing listens on the port, and a new server could take it (with SO_REUSEADDR, as
    servers bind: connections of the stopped server may linger in TIME_WAIT)."""
    with socket.socket() as s:
        s.settimeout(2)
        if s.connect_ex(("127.0.0.1", port)) == 0:
            return False
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _ui_api(port, path, payload=None, timeout=120):
    """A JSON API call to the UI server, retried until it answers (it takes seconds to start)."""
    deadline = time.time() + timeout
    while True:
        try:
            url = f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/{path}"
            req = urllib.request.Request(url, data=None if payload is None else json.dumps(payload).encode(),
                                         headers={"Content-Type": "application/json"})
            return json.loads(urllib.request.urlopen(req, timeout=5).read().decode())
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.5)


@pytest.fixture(scope="module")
def small_tracked_search(tmp_path_factory):
    out = tmp_path_factory.mktemp("ui") / "run"
    run_search(load_config(dict(TRACKED, candidates=2, promotion={"policy": "top_k", "k": 1})), out)
    return out


@pytest.mark.parametrize("how", ["sigterm", "ctrl-c"])
def test_ui_serves_the_store_and_stops_its_whole_process_group(tmp_path, small_tracked_search, how):
    """From another directory, the UI lists the search and its artifacts; SIGTERM to
    growsearch alone (a process manager, docker stop) or Ctrl-C (SIGINT to the terminal's
    group) stops mlflow and its workers too: the port is free afterwards."""
    import psutil

    out = small_tracked_search
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "growsearch.cli", "ui", str(out), "--port", str(port)],
                            cwd=elsewhere, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        exps = _ui_api(port, "experiments/search", {"max_results": 10})["experiments"]
        exp = next(e for e in exps if e["name"] == "tracked")
        runs = _ui_api(port, "runs/search", {"experiment_ids": [exp["experiment_id"]]})["runs"]
        parent = next(r for r in runs if {"key": "growsearch.role", "value": "search"} in r["data"]["tags"])
        files = _ui_api(port, f"artifacts/list?run_id={parent['info']['run_id']}")["files"]
        assert {"leaderboard.csv", "best_model_checkpoint"} <= {f["path"] for f in files}
        servers = psutil.Process(proc.pid).children(recursive=True)
        assert servers and not _port_is_free(port)
    finally:
        if how == "sigterm":
            os.kill(proc.pid, signal.SIGTERM)  # growsearch alone, not its group
        else:
            os.killpg(proc.pid, signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=180)
        except subprocess.TimeoutExpired:  # it ignored the signal: never leave its server running
            os.kill(proc.pid, signal.SIGTERM)
            proc.communicate(timeout=60)
            raise
    assert f"http://127.0.0.1:{port}" in err and "stopped" in err
    assert proc.returncode == 0
    assert not [p for p in servers if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert _port_is_free(port)
    assert not any(elsewhere.iterdir())  # the UI wrote nothing where it was started


def test_resume_against_another_tracking_store_starts_fresh_there(tmp_path):
    out = tmp_path / "run"
    run_search(load_config(TRACKED), out)
    other = f"sqlite:///{tmp_path / 'other.db'}"
    run_search(load_config(dict(TRACKED, tracking={"uri": other})), out, resume=True)
    check_search_runs(other, out)  # a parent and all five children, with final statuses, on the new store
    check_search_runs(default_uri(out), out)  # the first store is untouched and still complete
