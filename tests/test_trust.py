"""Trust under misuse: silent drift between runs, damaged files, file permissions."""

import json
import os
import resource
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time

import optuna
import pandas as pd
import pytest
import yaml
from conftest import tiny_search_config

from growsearch import checkpoint
from growsearch.errors import ConfigError
from growsearch.search import load_config, load_space, run_search
from growsearch.search.space import BUNDLED


def small(**changes):
    return tiny_search_config(**{"candidates": 3, "promotion": {"policy": "top_k", "k": 1}, "reference": False,
                                 "training": {"epochs": 1, "batch_size": 64}, **changes})


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_written_files_honour_the_umask(tmp_path, monkeypatch, umask, mode):
    from growsearch.models import build

    monkeypatch.setattr(checkpoint, "UMASK", umask)
    checkpoint.write_json(tmp_path / "a.json", {"x": 1})
    spec = {"family": "mlp", "in_dim": 2, "out_dim": 2, "hidden": [2]}
    checkpoint.save_checkpoint(tmp_path / "ck", build(spec), spec)
    for path in (tmp_path / "a.json", tmp_path / "ck" / "model.safetensors", tmp_path / "ck" / "spec.json"):
        assert stat.S_IMODE(path.stat().st_mode) == mode, path


def test_relative_paths_are_relative_to_the_config_file(tmp_path, monkeypatch):
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "mine.yaml").write_text("family: mlp\nknobs:\n  depth: {low: 1, high: 2}\n")
    (conf / "a.yaml").write_text("base: {checkpoint: ck}\nspace: mine.yaml\n")
    (conf / "b.yaml").write_text("base: {pretrain: {family: mlp}}\nspace: spaces/mlp.yaml\n")
    (conf / "c.yaml").write_text("base: {pretrain: {family: mlp}}\nspace: mlp.yaml\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "mine.yaml").write_text("family: mlp\nknobs:\n  width: {low: 1, high: 9}\n")
    (elsewhere / "mlp.yaml").write_text("family: mlp\nknobs:\n  width: {low: 1, high: 9}\n")
    monkeypatch.chdir(elsewhere)
    cfg = load_config(conf / "a.yaml")
    assert cfg.space == str(conf / "mine.yaml") and cfg.base.checkpoint == str(conf / "ck")
    assert set(load_space(cfg.space).knobs) == {"depth"}  # not the working directory's file
    # a missing path with a folder part never falls back to the bundled file of that name
    with pytest.raises(ConfigError, match=r"space: file .*conf/spaces/mlp.yaml does not exist"):
        load_space(load_config(conf / "b.yaml").space)
    # a bare bundled name is the bundled space, whatever the working directory holds
    space = load_space(load_config(conf / "c.yaml").space)
    assert space.path == str(BUNDLED / "mlp.yaml") and "width" in space.knobs and space.knobs["width"].high != 9


def test_a_changed_space_or_base_is_refused_on_resume(tmp_path):
    from growsearch.pretrain import pretrain

    base = tmp_path / "base"
    pretrain("mlp", "digits", out=base, epochs=1)
    space = tmp_path / "space.yaml"
    space.write_text((BUNDLED / "mlp.yaml").read_text())
    cfg = small(base={"checkpoint": str(base)}, space=str(space))
    out = tmp_path / "run"
    run_search(load_config(cfg), out)
    inputs = json.loads((out / "inputs.json").read_text())
    assert {"space_sha256", "base_sha256", "study"} <= set(inputs)
    run_search(load_config(cfg), out, resume=True)  # unchanged: fine
    space.write_text(space.read_text() + "# edited\n")
    with pytest.raises(ConfigError, match="the search space file changed since the search"):
        run_search(load_config(cfg), out, resume=True)
    space.write_text((BUNDLED / "mlp.yaml").read_text())
    pretrain("mlp", "digits", out=base, epochs=1, seed=1)  # another base under the same path
    with pytest.raises(ConfigError, match="the base checkpoint changed since the search"):
        run_search(load_config(cfg), out, resume=True)
    # deleting config.yaml does not let another config adopt the results
    (out / "config.yaml").unlink()
    with pytest.raises(ConfigError, match=r"holds search results but no config\.yaml"):
        run_search(load_config(small(candidates=2)), out)


def test_each_search_has_its_own_study_in_a_shared_storage(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    for name in ("one", "two"):
        run_search(load_config(small(name=name, storage=storage)), tmp_path / name)
    studies = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(storage)}
    assert len(studies) == 2 and all(n == 3 for n in studies.values()), studies
    assert all(json.loads((tmp_path / n / "inputs.json").read_text())["study"].startswith(n) for n in ("one", "two"))


def test_a_torn_journal_line_is_dropped_and_the_search_resumes(tmp_path, capfd):
    cfg = small(candidates=4)
    fresh = tmp_path / "fresh"
    run_search(load_config(cfg), fresh)
    out = tmp_path / "torn"
    run_search(load_config(cfg), out)
    journal = out / "study.journal"
    data = journal.read_bytes()
    journal.write_bytes(data + data.splitlines(keepends=True)[-1][:17])  # an append cut short by a kill
    run_search(load_config(cfg), out, resume=True)
    assert "dropped a torn last line (17 bytes) of study.journal" in capfd.readouterr().err
    repaired = journal.read_bytes()
    assert repaired.startswith(data) and all(json.loads(line) for line in repaired.splitlines())
    data = repaired
    # a torn tell: the last operation cut in half; the resumed search ends where a fresh one does
    lines = data.splitlines(keepends=True)
    journal.write_bytes(b"".join(lines[:-1]) + lines[-1][:-9])
    for name in ("leaderboard.csv", "promotion.json"):
        (out / name).unlink()
    run_search(load_config(cfg), out, resume=True)
    key = ["candidate", "plan", "init", "stage"]
    assert pd.read_csv(out / "leaderboard.csv")[key].values.tolist() == \
        pd.read_csv(fresh / "leaderboard.csv")[key].values.tolist()
    study = optuna.load_study(study_name=json.loads((out / "inputs.json").read_text())["study"],
                              storage=optuna.storages.JournalStorage(
                                  optuna.storages.journal.JournalFileBackend(str(journal))))
    candidates = [t.user_attrs["candidate"] for t in study.trials if "candidate" in t.user_attrs]
    assert sorted(candidates) == [f"c{i:04d}" for i in range(4)]  # repeats (duplicate_of) aside
    assert all(t.state != optuna.trial.TrialState.RUNNING for t in study.trials)


def test_a_damaged_middle_journal_line_is_refused(tmp_path):
    cfg = small(candidates=2)
    out = tmp_path / "run"
    run_search(load_config(cfg), out)
    journal = out / "study.journal"
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(lines[0] + b"{garbage\n" + b"".join(lines[1:]))
    with pytest.raises(ConfigError, match=r"study\.journal line 2 is damaged"):
        run_search(load_config(cfg), out, resume=True)
    assert os.path.exists(journal)


# -- the folder lock, transient failures, relative paths ----------------------------------
def _cli(args, **kw):
    return subprocess.Popen([sys.executable, "-m", "growsearch.cli", *map(str, args)],
                            **{"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, **kw})


def _rows(out):
    board = pd.read_csv(out / "leaderboard.csv")
    return board.sort_values("candidate")[["candidate", "plan", "init", "stage"]].values.tolist()


def test_a_second_process_on_the_folder_is_refused_and_a_stale_lock_taken_over(tmp_path):
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(tiny_search_config(candidates=6, training={"epochs": 4, "batch_size": 32})))
    out = tmp_path / "run"
    # the first search holds still while screening c0001 (the fault hook's pause): the second
    # meets it there for certain, not only when it starts before a quick first run has ended
    paused = tmp_path / "paused"
    first = _cli(["run", cfg_path, "--out", out], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                 env={**os.environ, "GROWSEARCH_INJECT_FAULT": f"screen:c0001:pause:{paused}"})
    deadline = time.time() + 300
    while time.time() < deadline and not paused.exists():
        time.sleep(0.05)
    assert paused.exists() and first.poll() is None
    second = subprocess.run([sys.executable, "-m", "growsearch.cli", "run", cfg_path, "--out", out, "--resume"],
                            capture_output=True, text=True, timeout=300)
    assert second.returncode == 2, second.stderr
    assert f"is in use by growsearch run (pid {first.pid} on {socket.gethostname()}" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    os.kill(first.pid, signal.SIGKILL)  # the holder dies without releasing: the lock is stale
    first.wait()
    third = subprocess.run([sys.executable, "-m", "growsearch.cli", "run", cfg_path, "--out", out, "--resume"],
                           capture_output=True, text=True, timeout=600)
    assert third.returncode == 0, third.stderr
    assert f"took over the lock of {out} left by pid {first.pid}" in third.stderr
    board = pd.read_csv(out / "leaderboard.csv")
    assert board["candidate"].is_unique and len(board) == 7  # 6 candidates + the reference


def test_a_full_disk_fails_the_training_for_now_and_resume_retries_it(tmp_path):
    """RLIMIT_FSIZE makes every candidate checkpoint (> 16 KiB) fail to save, as a full disk
    would; the search stops without a leaderboard (exit 1), and --resume with space freed
    trains those candidates again and ends where an uninterrupted search does."""
    cfg = tiny_search_config(candidates=5, training={"epochs": 3, "batch_size": 64})
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "full"

    def small_disk():
        resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024, 16 * 1024))

    full = subprocess.run([sys.executable, "-m", "growsearch.cli", "run", cfg_path, "--out", out],
                          capture_output=True, text=True, timeout=600, preexec_fn=small_disk)
    assert full.returncode == 1, full.stderr
    assert "training(s) failed for reasons of the environment" in full.stderr and "File too large" in full.stderr
    assert not (out / "leaderboard.csv").exists()  # nothing decided on partial results
    promoted = json.loads((out / "promotion.json").read_text())["promoted"]
    for cid in promoted:
        record = json.loads((out / "candidates" / f"{cid}.json").read_text())
        assert record["stage"] == "failed" and record["retry"] is True, record
    done = subprocess.run([sys.executable, "-m", "growsearch.cli", "run", cfg_path, "--out", out, "--resume"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    fresh = tmp_path / "fresh"
    run_search(load_config(cfg), fresh)
    assert _rows(out) == _rows(fresh)
    for cid in promoted:
        record = json.loads((out / "candidates" / f"{cid}.json").read_text())
        assert "retry" not in record and "reason" not in record and record["stage"] != "failed"


def test_records_hold_paths_relative_to_the_results_folder(tmp_path, monkeypatch):
    out = tmp_path / "run"
    run_search(load_config(small(candidates=2)), out)
    trained = [json.loads(p.read_text()) for p in (out / "candidates").glob("c*.json")]
    assert any("checkpoint" in r for r in trained)
    assert all(r["checkpoint"].startswith("candidates/") for r in trained if "checkpoint" in r)
    # a copy reads its own files, from any working directory
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    shutil.rmtree(out)
    monkeypatch.chdir(tmp_path.parent)
    from growsearch.cli import main

    shutil.rmtree(copy / "best")
    assert main(["report", str(copy)]) == 0
    assert (copy / "best" / "model.safetensors").exists()


def test_sync_after_a_lost_ledger_matches_runs_by_candidate_tag(tmp_path):
    import sqlite3

    from growsearch.tracking import sync

    out = tmp_path / "run"
    run_search(load_config(small(candidates=2, tracking={"enabled": True})), out)

    def children():
        with sqlite3.connect(out / "mlflow.db") as con:
            return sorted(con.execute("SELECT value FROM tags WHERE key = 'growsearch.candidate'").fetchall())

    before = children()
    assert [c for (c,) in before] == ["c0000", "c0001"]
    (out / "mlflow.json").unlink()  # the ledger is lost
    result = sync(out)
    assert children() == before and result["pending"] == 0  # matched on the server, not logged again
    assert json.loads((out / "mlflow.json").read_text())  # and the ledger is rebuilt
