"""Ray Tune as the executor, on a real local Ray instance and a real two-node cluster."""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from conftest import tiny_search_config

from growsearch.search import load_config, run_search
from growsearch.search.ray_executor import trial_device

pytestmark = pytest.mark.slow

RAY_TINY = tiny_search_config(name="tiny-ray", candidates=4,
                              executor={"name": "ray", "max_concurrent_trials": 2, "max_failures": 1})


def test_trial_device_follows_ray_gpu_assignment():
    assert trial_device([]) == torch.device("cpu")
    assert trial_device([3]) == torch.device("cuda:0")  # CUDA_VISIBLE_DEVICES holds only the assigned GPU


@pytest.fixture()
def fault_env(monkeypatch):
    def set_fault(spec):
        monkeypatch.setenv("GROWSEARCH_INJECT_FAULT", spec)
    return set_fault


def test_search_on_local_ray_with_a_raising_trial_and_a_killed_worker(tmp_path, fault_env):
    marker = tmp_path / "killed-once"
    # c0001's screening raises; the reference training's worker is SIGKILLed once, then retried
    fault_env(f"screen:c0001:raise,train:base:kill-once:{marker}")
    out = tmp_path / "run"
    result = run_search(load_config(RAY_TINY), out)
    board = pd.read_csv(out / "leaderboard.csv")
    cands = board[board["candidate"] != "base"]
    assert len(cands) == 4 and cands["candidate"].is_unique
    failed = board[board["candidate"] == "c0001"].iloc[0]
    assert failed["stage"] == "failed" and "InjectedFaultError" in failed["reason"]
    trained = cands[cands["stage"].isin(["completed", "stopped_early"])]
    assert len(trained) == 2 and trained["final_accuracy"].notna().all()
    assert marker.exists()  # the worker really was killed ...
    base = json.loads((out / "candidates" / "base.json").read_text())
    assert base["stage"] == "completed" and base["retries"] == 1  # ... and the retry finished it
    assert (out / "best" / "model.safetensors").exists() and result.best is not None
    # Tune's own experiment folders are where the config says
    assert (out / "ray").is_dir()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_node_cluster_with_ray_job_submit(tmp_path):
    """A head and a worker node on loopback; the search is submitted as a Ray job."""
    ray = shutil.which("ray")
    temp = Path(tempfile.mkdtemp(prefix="gsc-"))  # short: Ray's socket paths are length-limited
    port, dash = _free_port(), _free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    common = ["--num-cpus", "1", "--disable-usage-stats"]
    subprocess.run([ray, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                    "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash), "--include-dashboard", "true",
                    "--temp-dir", str(temp), *common], check=True, env=env, capture_output=True, timeout=180)
    try:
        subprocess.run([ray, "start", "--address", f"127.0.0.1:{port}", "--node-ip-address", "127.0.0.1",
                        *common], check=True, env=env, capture_output=True, timeout=180)
        cfg = {**RAY_TINY, "candidates": 3, "promotion": {"policy": "top_k", "k": 1},
               "executor": {"name": "ray", "address": "auto", "max_concurrent_trials": 2}}
        cfg_path = tmp_path / "cluster.yaml"
        cfg_path.write_text(yaml.safe_dump(cfg))
        out = tmp_path / "cluster-run"
        deadline = time.time() + 60
        while True:  # the job server comes up a little after `ray start` returns
            status = subprocess.run([ray, "job", "list", "--address", f"http://127.0.0.1:{dash}"],
                                    env=env, capture_output=True, text=True)
            if status.returncode == 0 or time.time() > deadline:
                break
            time.sleep(1)
        job = subprocess.run([ray, "job", "submit", "--address", f"http://127.0.0.1:{dash}", "--",
                              sys.executable, "-m", "growsearch.cli", "run", str(cfg_path), "--out", str(out)],
                             env=env, capture_output=True, text=True, timeout=600)
        assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
        assert "succeeded" in (job.stdout + job.stderr).lower()
        board = pd.read_csv(out / "leaderboard.csv")
        assert len(board[board["candidate"] != "base"]) == 3
        assert (board["stage"] == "completed").sum() >= 1
        nodes = subprocess.run([sys.executable, "-c", "import ray; ray.init(address='auto'); "
                                "print(len([n for n in ray.nodes() if n['Alive']]))"],
                               env=env, capture_output=True, text=True, timeout=120)
        assert nodes.stdout.strip().splitlines()[-1] == "2"
        # two CPUs in the cluster, but no node with two: a trial asking for 2 could never start
        big = {**cfg, "executor": {**cfg["executor"], "cpus_per_trial": 2}}
        cfg_path.write_text(yaml.safe_dump(big))
        refused = subprocess.run([sys.executable, "-m", "growsearch.cli", "run", str(cfg_path), "--out",
                                  str(tmp_path / "too-big")], env=env, capture_output=True, text=True, timeout=300)
        assert refused.returncode == 2, refused.stderr[-2000:]
        assert "executor.cpus_per_trial: got 2; the Ray cluster at 'auto' (its largest node) offers at most 1 CPU" \
            in refused.stderr and len(refused.stderr.strip().splitlines()) == 1, refused.stderr[-2000:]
        assert not (tmp_path / "too-big").exists()
    finally:
        subprocess.run([ray, "stop", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)


def test_unreachable_ray_address_is_one_line(tmp_path, capsys):
    from growsearch.cli import main

    cfg = {**RAY_TINY, "executor": {"name": "ray", "address": "ray://127.0.0.1:1"}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["run", str(path), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "executor.address: cannot reach a Ray cluster at 'ray://127.0.0.1:1'" in err


def _board(out):
    board = pd.read_csv(out / "leaderboard.csv").sort_values("candidate")
    return board[["candidate", "plan", "init", "stage", "params", "epochs"]].fillna("").values.tolist(), board


def test_same_leaderboard_in_process_on_ray_and_after_kill_9(tmp_path):
    """Synchronous successive halving makes training decisions independent of concurrency,
    timing and interruption: in-process, on Ray with 2 concurrent trials, and on Ray killed
    with SIGKILL at a random moment of training and run again -- the same leaderboard."""
    import copy
    import random
    import signal

    torch.set_num_threads(1)  # Ray trials use cpus_per_trial threads; the same arithmetic here
    cfg = copy.deepcopy(RAY_TINY)
    cfg.update(candidates=5, promotion={"policy": "top_k", "k": 3}, training={"epochs": 4, "batch_size": 64})
    local = {**copy.deepcopy(cfg), "executor": {"name": "local"}}
    run_search(load_config(local), tmp_path / "local")
    run_search(load_config(cfg), tmp_path / "ray")
    expected, local_board = _board(tmp_path / "local")
    got, ray_board = _board(tmp_path / "ray")
    assert got == expected
    assert {"stopped_early", "completed"} <= set(local_board["stage"])  # the rungs really decided
    assert ray_board["manifold_metric"].fillna(0).tolist() == pytest.approx(
        local_board["manifold_metric"].fillna(0).tolist(), rel=1e-5)
    for column in ("final_accuracy", "val_score", "test_score"):  # stopped trials too: val and test both kept
        assert ray_board[column].fillna(-1).tolist() == pytest.approx(local_board[column].fillna(-1).tolist(),
                                                                      abs=1e-6), column

    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "growsearch.cli", "run", str(path), "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and not (out / "promotion.json").exists():
        time.sleep(0.1)
    time.sleep(random.uniform(0.5, 6.0))  # somewhere in training
    assert proc.poll() is None, "the search ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "leaderboard.csv").exists()
    done = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert _board(out)[0] == expected


def test_ctrl_c_and_sigterm_stop_a_ray_search_and_the_resume_ends_as_uninterrupted(tmp_path):
    """Ctrl-C (SIGINT to the process group) while Ray screens, SIGTERM while Ray trains:
    each stops the search at once (exit 130 / 143) without deciding anything on partial
    results; --resume then ends exactly where an uninterrupted search does. The signals
    come from inside the Ray trials (the fault hook), so each lands at its stage for certain."""
    import copy

    cfg = copy.deepcopy(RAY_TINY)
    cfg["executor"] = {"name": "ray", "max_concurrent_trials": 1}
    cfg_path = tmp_path / "ray.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "ray"
    cmd = [sys.executable, "-m", "growsearch.cli", "run", str(cfg_path), "--out", str(out)]

    def interrupted(fault, code, name):
        # a session of its own: the signal goes to the search's process group, not to pytest's
        proc = subprocess.run(cmd + (["--resume"] if out.exists() else []), capture_output=True, text=True,
                              timeout=600, start_new_session=True, env={**os.environ, "GROWSEARCH_INJECT_FAULT": fault})
        assert proc.returncode == code, proc.stderr[-2000:]
        assert f"interrupted by {name}" in proc.stderr and not (out / "leaderboard.csv").exists()

    sigint, sigterm = tmp_path / "sigint.marker", tmp_path / "sigterm.marker"
    interrupted(f"screen:c0001:sigint-once:{sigint}", 130, "SIGINT")
    assert sigint.exists() and not (out / "promotion.json").exists()  # screening was cut: nothing promoted
    # whichever training runs first gets SIGTERM (one marker: only once)
    interrupted(",".join(f"train:{cid}:sigterm-once:{sigterm}" for cid in ("base", "c0000", "c0001", "c0002",
                                                                            "c0003")), 143, "SIGTERM")
    assert sigterm.exists() and (out / "promotion.json").exists()

    third = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=600)
    assert third.returncode == 0, third.stderr[-2000:]
    local = copy.deepcopy(RAY_TINY)
    local["executor"] = {"name": "local"}
    torch.set_num_threads(1)
    run_search(load_config(local), tmp_path / "local")
    key = ["candidate", "plan", "init", "stage"]
    rows = [pd.read_csv(tmp_path / d / "leaderboard.csv").sort_values("candidate")[key].values.tolist()
            for d in ("ray", "local")]
    assert rows[0] == rows[1]


def test_tune_asha_after_a_resume_knows_the_finished_trainings_rung_scores():
    """A resumed search replays finished trainings into the engine's ASHA; Tune's ASHA must
    judge the remaining trials against those scores as in the uninterrupted run (a trial
    below the earlier rung-1 score stops), not against empty rungs (it would continue)."""
    from types import SimpleNamespace

    from ray.tune.schedulers import TrialScheduler

    from growsearch.search.config import EarlyStoppingSpec
    from growsearch.search.ray_executor import tune_asha
    from growsearch.search.schedulers import ASHA

    spec = EarlyStoppingSpec(policy="asha", grace_epochs=1, reduction_factor=3)
    replayed = ASHA(4, 1, 3)
    for epoch, score in ((1, 0.9), (2, 0.92), (3, 0.95), (4, 0.96)):  # c0002 finished before the interruption
        assert replayed.on_epoch("c0002", epoch, score)
    trial = SimpleNamespace(trial_id="c0001")
    fresh, resumed = tune_asha(spec, 4, ASHA(4, 1, 3)), tune_asha(spec, 4, replayed)
    assert fresh._brackets[0].on_result(trial, 1, 0.5) == TrialScheduler.CONTINUE
    assert resumed._brackets[0].on_result(trial, 1, 0.5) == TrialScheduler.STOP
    assert replayed.on_epoch("c0001", 1, 0.5) is False  # the engine's own ASHA: the same decision


def test_the_next_start_stops_what_a_killed_search_left_of_its_ray_instance(tmp_path):
    """kill -9 of the search alone leaves Ray's agents of its local instance running; the
    next start (stop_stale_local_instances, called before ray.init) stops exactly those."""
    import json as _json
    import signal

    import psutil

    from growsearch.search.ray_executor import DRIVER_FILE, RAY_TEMP_PREFIX, stop_stale_local_instances

    cfg = tiny_search_config(candidates=2, executor={"name": "ray", "max_concurrent_trials": 1})
    cfg_path = tmp_path / "ray.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    paused = tmp_path / "paused"  # the search holds still inside its first Ray trial
    cmd = [sys.executable, "-m", "growsearch.cli", "run", str(cfg_path), "--out", str(tmp_path / "r")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, "GROWSEARCH_INJECT_FAULT": f"screen:c0000:pause:{paused}"})
    deadline = time.time() + 300
    while time.time() < deadline and not paused.exists():
        time.sleep(0.1)
    assert paused.exists(), "the search never reached its first trial"
    temp = next(d for d in Path(tempfile.gettempdir()).glob(RAY_TEMP_PREFIX + "*")
                if (d / DRIVER_FILE).exists() and _json.loads((d / DRIVER_FILE).read_text())["pid"] == proc.pid)

    def holders():
        found = []
        for p in psutil.process_iter(["cmdline"]):
            try:
                if str(temp) in " ".join(p.info["cmdline"] or []) or any(str(temp) in f.path for f in p.open_files()):
                    found.append(p)
            except psutil.Error:
                continue
        return found

    os.kill(proc.pid, signal.SIGKILL)  # the driver alone, as `kill -9 PID` does
    proc.wait()
    time.sleep(5)  # raylet and the workers go with their driver; the agents stay
    left = holders()
    assert left, "nothing of the killed search's Ray instance is left: the test proves nothing"
    try:
        assert stop_stale_local_instances(grace=5.0) >= len(left)
        assert not holders()
        assert not (temp / DRIVER_FILE).exists() and stop_stale_local_instances() == 0  # handled once
    finally:
        for p in left:
            if p.is_running():
                p.kill()
