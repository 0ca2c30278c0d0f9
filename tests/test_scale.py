"""``growsearch bench scale`` in small, as CI runs it: a real three-node Ray cluster on
127.0.0.1 (``ray start``), searches submitted with ``ray job submit``, a worker node killed
while trials run on it, the driver killed with ``kill -9`` and the job resubmitted with
``--resume``, and fractional GPU requests packed on nodes that declare GPUs."""

import pytest

from growsearch.bench.scale import _max_overlap, fits, gpu_packing, run_faults

pytestmark = pytest.mark.slow


def test_node_loss_and_driver_loss_lose_and_duplicate_nothing(tmp_path):
    result = run_faults(candidates=30, concurrent=4, workers=2, cpus_per_node=32, workdir=tmp_path)
    node, driver = result["node_loss"], result["driver_loss"]
    # the node really ran trials when it was killed, and Tune retried them on the other node
    assert node["trial_processes_killed"] >= 1 and node["retried_candidates"] >= 1, node["fault"]
    assert driver["killed_job"] == "FAILED" and not driver["leaderboard_after_kill"]  # the kill really stopped it
    assert 0 < driver["screened_before_kill"] < 30
    for run in (node, driver):
        assert run["leaderboard_rows"] == 30 and run["lost"] == 0 and run["duplicated"] == 0
        assert run["unfinished"] == 0
        # one MLflow child per candidate, with the leaderboard's stage
        assert run["mlflow_children"] == 30 and run["mlflow_duplicated"] == 0 and run["mlflow_match"]
    assert driver["resumed_job"] == "SUCCEEDED" and driver["identical_to_uninterrupted"]
    assert node["leftover_processes"] == 0  # every process the cluster started is gone


def test_fractional_gpu_trials_share_the_gpus_nodes_declare(tmp_path):
    r = gpu_packing(candidates=12, concurrent=8, gpus_per_trial=0.25, workers=2, workdir=tmp_path)
    assert r["lost"] == 0 and r["duplicated"] == 0 and r["mlflow_match"]
    assert r["trials"] > 0 and r["trials_with_a_gpu"] == r["trials"]  # every trial got a quarter of a GPU
    assert r["cuda_visible_devices_match"]  # ... and saw it in CUDA_VISIBLE_DEVICES
    assert r["devices"] == ["cpu"] or r["devices"] == ["cuda:0"]  # no CUDA here: the CPU fallback
    # more than one trial on a GPU at once (fractions are packed), never more than 1 / 0.25
    assert 1 < r["most_trials_on_one_gpu_at_once"] <= 4
    assert r["leftover_processes"] == 0


def test_memory_fit_and_overlap_arithmetic():
    assert fits(16, 400, 1300, 8.0) and not fits(32, 400, 1300, 8.0)
    assert _max_overlap([(0, 2), (1, 3), (2.5, 4)]) == 2 and _max_overlap([]) == 0



def test_mlflow_ledger_appends_a_line_per_child_and_replays_it(tmp_path):
    """The ledger is not rewritten per child run (that made logging N candidates O(N^2)):
    each child's entry is a line appended to mlflow.json.log, replayed on load (a torn last
    line ignored), and folded into the snapshot once the log is as long as the ledger."""
    import json

    from growsearch.search.config import load_config
    from growsearch.tracking import make_tracker

    cfg = load_config({"base": {"pretrain": {"family": "mlp", "dataset": "digits", "epochs": 3}},
                       "space": "mlp.yaml", "name": "ledger"})
    tracker = make_tracker(cfg.tracking, tmp_path, "ledger")
    tracker.start(cfg, tmp_path, {"family": "mlp"}, {"accuracy": 0.5})
    record = {"plan": {"width": 2.0}, "init": "masked", "plan_name": "w2", "kind": "width", "stage": "screened",
              "params": 100, "manifold_metric": 1.0}
    for i in range(10):
        tracker.candidate({**record, "id": f"c{i:04d}"})
    snapshot = json.loads((tmp_path / "mlflow.json").read_text())[tracker.uri]
    assert snapshot["children"] == {}  # not rewritten per child ...
    log = tmp_path / "mlflow.json.log"
    assert len(log.read_text().splitlines()) == 20  # ... one line per change (created, screened)
    log.write_text(log.read_text() + '{"uri": "torn')  # a process killed mid-append
    again = make_tracker(cfg.tracking, tmp_path, "ledger")
    again.load_ledger()
    assert again.ledger["children"] == tracker.ledger["children"]
    assert sorted(again.ledger["children"]) == [f"c{i:04d}" for i in range(10)]
    assert not log.exists()  # loading folded the log into the snapshot: nothing follows the torn line
    for i in range(10, 42):  # 64 lines: folded into the snapshot, the log emptied
        again.candidate({**record, "id": f"c{i:04d}"})
    assert len(json.loads((tmp_path / "mlflow.json").read_text())[tracker.uri]["children"]) == 42
    assert not log.exists()
