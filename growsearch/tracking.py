"""MLflow tracking: one parent run per search, one child run per candidate.

Everything goes through ``MlflowClient`` with explicit run ids -- no fluent "active
run" state -- and children carry the parent id in the ``mlflow.parentRunId`` tag
explicitly (``nested=True`` does not cross process boundaries; all logging happens in
the driver, which receives every trial's records, Ray's included).

What a child run holds: flattened plan params (``plan.width``, ``plan.depth``, ...),
``init``, ``params``, ``flops``; metrics: the manifold metric and its pieces, the
function-preservation deviation, screening and training cost, per-epoch
train/val/test curves with steps, final val and test accuracy/loss, ``gain``
(validation, what the best is chosen by) and ``test_gain``; tags ``stage`` and ``reason``.
A budgeted search (``budget:``) also logs on the parent run ``surrogate_tau`` (the online
Kendall tau, one step per rung decision) and, at the end, ``budget`` and ``spent`` (training
FLOPs) with ``budget_full_trainings`` and ``spent_full_trainings``.
Statuses: FINISHED (screened, rejected, completed), KILLED (stopped early by the
scheduler), FAILED (with the error), RUNNING only while a promoted candidate trains.

Idempotent: ``mlflow.json`` in the results folder is a ledger of what was logged
(parent id, child ids, stages, epochs), one per tracking URI; child entries are appended
to ``mlflow.json.log`` and folded into it from time to time (linear cost in the candidates).
A resumed search reuses its parent and children;
a tracking server that goes away mid-search costs nothing but a warning -- the results
folder is complete -- and ``growsearch sync DIR`` uploads whatever the ledger lacks.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from growsearch import __version__
from growsearch.checkpoint import write_json
from growsearch.errors import ConfigError
from growsearch.report import rerender
from growsearch.results import SearchState

STATUS = {"completed": "FINISHED", "screened": "FINISHED", "rejected": "FINISHED",
          "stopped_early": "KILLED", "failed": "FAILED", "promoted": "RUNNING",
          "paused": "RUNNING"}
EPOCH_METRICS = ("train_loss", "val_loss", "val_accuracy", "test_loss", "test_accuracy")  # per-epoch curves
PIECES = ("loss0", "tau", "log_volume", "shrink", "check_loss", "cost", "seconds", "metric_per_param")


#: Tags of every experiment growsearch creates: MLflow 3's UI opens an experiment of this
#: kind in its model-training view (runs, metrics, compare), not the GenAI view (traces).
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}


def default_uri(out: str | Path) -> str:
    """The default tracking store of a search: SQLite inside its results folder."""
    return f"sqlite:///{Path(out).resolve() / 'mlflow.db'}"


def artifact_root(uri: str) -> str | None:
    """Where a new experiment's artifacts go: beside a local SQLite store (for the default
    store, ``mlartifacts/`` inside the results folder, never ``./mlruns`` in the current
    directory); None -- the server decides -- for a remote tracking server."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri[len("sqlite:///"):]).resolve().parent / "mlartifacts").as_uri()


def ui_route(out: str | Path, uri: str) -> str:
    """The MLflow UI route (after ``http://host:port/``) of a search's runs, in the UI's
    model-training view: ``#/experiments/<id>/runs?workflowType=machine_learning``.

    MLflow 3's UI opens every experiment in its GenAI view unless the ``workflowType``
    query parameter (or the user's last toggle) says otherwise; the experiment's
    ``mlflow.experimentKind`` tag is set as well, for the UIs that read it."""
    ledger = Path(out) / "mlflow.json"
    experiment = json.loads(ledger.read_text()).get(uri, {}).get("experiment_id") if ledger.exists() else None
    where = f"experiments/{experiment}/runs" if experiment else "experiments"
    return f"#/{where}?workflowType=machine_learning"


def quiet_library_logs() -> None:
    """MLflow's and alembic's INFO lines (creating database tables, migrations) are not the
    user's business: shown only with ``--debug`` (which sets ``GROWSEARCH_DEBUG``). MLflow
    sets its logger's level when it is imported, so it is imported first."""
    if os.environ.get("GROWSEARCH_DEBUG"):
        return
    import mlflow  # noqa: F401  (configures its loggers on import; we adjust them after)

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


def flatten(prefix: str, obj: Any) -> dict[str, Any]:
    """``{"a": {"b": 1}, "c": [2, 3]}`` -> ``{"p.a.b": 1, "p.c": "[2, 3]"}``."""
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(flatten(f"{prefix}.{k}" if prefix else str(k), v))
        return out
    return {prefix: json.dumps(obj) if isinstance(obj, list) else obj}


def git_revision() -> str:
    try:
        root = Path(__file__).resolve().parent.parent
        return subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def write_ahead_log(db: Path) -> None:
    """Put a SQLite tracking store in write-ahead-log mode (a setting kept in the file): a
    commit then costs one fsync of the log instead of the rollback journal's several, which
    cuts the time to log a child run about threefold (~90 -> ~25 ms on this project's
    machines, ``growsearch bench scale``) at the same durability. Readers (the MLflow UI)
    no longer block the writer. SQLite keeps ``mlflow.db-wal``/``-shm`` beside the store
    while it is open and folds them back when the last connection closes."""
    import sqlite3

    if not db.exists():
        return
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as con:
        con.execute("PRAGMA journal_mode=WAL")


class MLflowTracker:
    def __init__(self, uri: str, experiment: str, out: str | Path) -> None:
        from mlflow.tracking import MlflowClient

        self.uri, self.experiment_name, self.out = uri, experiment, Path(out)
        try:
            self.client = MlflowClient(tracking_uri=uri)  # a local store is created (or migrated) here
        except Exception as exc:  # a full disk, a read-only folder: the environment's, one line
            if uri.startswith(("http://", "https://")):
                raise
            cause = str(getattr(exc, "orig", None) or exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise OSError(f"tracking: cannot write the MLflow store {uri} ({cause})") from None
        if uri.startswith("sqlite:///"):
            write_ahead_log(Path(uri[len("sqlite:///"):]))
        self.ledger_path = self.out / "mlflow.json"
        # one ledger per tracking URI: a search resumed against another server starts fresh there
        self._ledgers: dict[str, Any] = {}
        self.ledger: dict[str, Any] = self._ledgers.setdefault(uri, {"parent": None, "children": {}})
        self.pending: set[str] = set()
        self.offline = False
        self._logged = 0  # child entries appended to the ledger's log since its snapshot

    # -- reachability ------------------------------------------------------------------
    def check(self) -> None:
        """Fail before any compute when the tracking server cannot be reached (a plain
        health request with a short timeout: MLflow's client would retry for minutes)."""
        if not self.uri.startswith(("http://", "https://")):
            return  # a local store (SQLite) is created with the results folder
        import urllib.request

        try:
            urllib.request.urlopen(self.uri.rstrip("/") + "/health", timeout=10)
        except Exception as exc:
            raise ConfigError(f"tracking.uri: cannot reach the MLflow tracking server at {self.uri!r} "
                              f"({type(exc).__name__}); start it, fix the URI, or set tracking.enabled: "
                              "false") from None

    def load_ledger(self) -> None:
        """The ledger: the snapshot ``mlflow.json``, then the child entries appended to
        ``mlflow.json.log`` since it was written (a torn last line is ignored; without a
        snapshot the log belongs to a lost ledger and is dropped, see :meth:`_adopt`)."""
        replayed = False
        if self.ledger_path.exists():
            self._ledgers = json.loads(self.ledger_path.read_text())
            for line in self._log_path.read_text().splitlines() if self._log_path.exists() else []:
                try:
                    item = json.loads(line)
                except ValueError:
                    continue
                ledger = self._ledgers.setdefault(item["uri"], {"parent": None, "children": {}})
                ledger["children"][item["child"]] = item["entry"]
                replayed = True
        else:
            self._log_path.unlink(missing_ok=True)
        self.ledger = self._ledgers.setdefault(self.uri, {"parent": None, "children": {}})
        self._logged = 0
        if replayed:  # folded into the snapshot now: later lines never follow a torn one
            self._save()

    @property
    def _log_path(self) -> Path:
        return self.ledger_path.with_name(self.ledger_path.name + ".log")

    def _save(self, child: str | None = None) -> None:
        """Persist the ledger. A child's entry is one line appended to ``mlflow.json.log``
        (constant time: rewriting the whole ledger per child made logging a search of N
        candidates cost O(N^2)); the snapshot is rewritten, and the log emptied, when the log
        holds as many lines as the ledger has children (so the cost stays linear overall),
        and for any other change. Both survive a killed process: the snapshot is written
        atomically before the log is removed, and replaying a line twice changes nothing."""
        if child is not None and self.ledger_path.exists():
            with open(self._log_path, "a") as f:
                f.write(json.dumps({"uri": self.uri, "child": child, "entry": self.ledger["children"][child]}) + "\n")
            self._logged += 1
            if self._logged < max(64, len(self.ledger["children"])):
                return
        write_json(self.ledger_path, self._ledgers)
        self._log_path.unlink(missing_ok=True)
        self._logged = 0

    def _guard(self, what: str, fn, *args: Any) -> bool:
        """Run an MLflow call; on failure go offline (the client retries each call for
        minutes, which would stall the search), remember what is missing, and go on."""
        if self.offline:
            self.pending.add(what)
            return False
        try:
            fn(*args)
            return True
        except Exception as exc:  # a lost server must not stop the search
            self.offline = True
            print(f"growsearch: warning: MLflow unreachable ({type(exc).__name__}); results stay in "
                  f"{self.out}; run 'growsearch sync {self.out}' when it is back", file=sys.stderr)
            self.pending.add(what)
            return False

    # -- the engine's hooks ----------------------------------------------------------------
    def start(self, cfg: Any, out: Path, base_spec: dict[str, Any], base_test: dict[str, float]) -> None:
        self.load_ledger()
        self._guard("parent", self._start_parent, cfg, base_spec, base_test)

    def _start_parent(self, cfg: Any, base_spec: dict[str, Any], base_test: dict[str, float]) -> None:
        if self.ledger["parent"] is not None:
            self.client.update_run(self.ledger["parent"], status="RUNNING")
            return
        exp = self.client.get_experiment_by_name(self.experiment_name)
        if exp is None:
            exp_id = self.client.create_experiment(self.experiment_name, artifact_location=artifact_root(self.uri),
                                                   tags=EXPERIMENT_TAGS)
        else:
            exp_id = exp.experiment_id
            for key, value in EXPERIMENT_TAGS.items():
                if key not in exp.tags:
                    self.client.set_experiment_tag(exp_id, key, value)
        if self._adopt(exp_id):  # the ledger was lost: the server's runs of this folder are matched by tag
            return
        run = self.client.create_run(exp_id, run_name=cfg.name or self.out.name, tags={
            "growsearch.version": __version__, "growsearch.git_revision": git_revision(),
            "growsearch.results": str(self.out.resolve()), "growsearch.role": "search"})
        self.ledger["parent"] = run.info.run_id
        self.ledger["experiment_id"] = exp_id
        self._save()
        from mlflow.entities import Metric, Param

        params = {**flatten("config", json.loads(json.dumps(cfg.to_dict()))), **flatten("base", base_spec)}
        self.client.log_batch(run.info.run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()],
                              metrics=[Metric(f"base_test_{k}", float(v), 0, 0) for k, v in base_test.items()])
        self.client.log_dict(run.info.run_id, cfg.to_dict(), "config.json")
        self.client.log_dict(run.info.run_id, base_spec, "base_spec.json")

    def _adopt(self, exp_id: str) -> bool:
        """Rebuild a lost ledger (``mlflow.json`` deleted) from the server: the parent run is the
        one tagged with this results folder, the children are matched by ``growsearch.candidate``
        -- so ``sync`` and a resumed search never log a candidate twice."""
        folder = str(self.out.resolve()).replace("'", "\\'")
        parents = self.client.search_runs([exp_id], filter_string=f"tags.`growsearch.results` = '{folder}' and "
                                          "tags.`growsearch.role` = 'search'", max_results=1,
                                          order_by=["attributes.start_time ASC"])
        if not parents:
            return False
        parent = parents[0].info.run_id
        self.ledger.update(parent=parent, experiment_id=exp_id)
        self.client.update_run(parent, status="RUNNING")
        for child in self.client.search_runs([exp_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'",
                                             max_results=50_000):
            cid = child.data.tags.get("growsearch.candidate")
            if cid and cid not in self.ledger["children"]:
                steps = [m.step for m in self.client.get_metric_history(child.info.run_id, "test_accuracy")]
                stage = child.data.tags.get("stage")
                self.ledger["children"][cid] = {"run_id": child.info.run_id, "stages": [stage] if stage else [],
                                                "epochs": max(steps, default=0)}
        self._save()
        return True

    def _timed(self, start: float) -> None:
        """Add the time since ``start`` (``time.perf_counter``) to the ledger's ``timing``: the
        seconds spent logging candidates and epochs, the calls, and the child runs so far
        (``growsearch bench scale`` reads the time per child run from it)."""
        timing = self.ledger.setdefault("timing", {"seconds": 0.0, "calls": 0})
        timing["seconds"] += time.perf_counter() - start
        timing["calls"] += 1
        timing["children"] = len(self.ledger["children"])

    def candidate(self, record: dict[str, Any]) -> None:
        if self.ledger["parent"] is None:
            self.pending.add(record["id"])
            return
        start = time.perf_counter()
        self._guard(record["id"], self._log_candidate, record)
        self._timed(start)

    def _log_candidate(self, r: dict[str, Any]) -> None:
        from mlflow.entities import Metric, Param, RunTag

        entry = self.ledger["children"].get(r["id"])
        if entry is None:
            run = self.client.create_run(self.ledger["experiment_id"], run_name=f"{r['id']} {r.get('plan_name', '')}",
                                         tags={"mlflow.parentRunId": self.ledger["parent"],
                                               "growsearch.candidate": r["id"]})
            entry = {"run_id": run.info.run_id, "stages": [], "epochs": 0}
            self.ledger["children"][r["id"]] = entry
            self._save(r["id"])
        # a new child's params go with its first stage's metrics and tags: one call, not two
        params = [] if entry["stages"] else [Param(k, str(v)) for k, v in {
            **flatten("plan", r.get("plan") or {}), "init": r.get("init", ""), "kind": r.get("kind", ""),
            "plan_name": r.get("plan_name", "")}.items()]
        run_id, stage = entry["run_id"], r.get("stage", "")
        if stage in entry["stages"]:
            return
        metrics = {"params": r.get("params"), "flops": r.get("flops"),
                   "manifold_metric": r.get("manifold_metric"), "manifold_per_param": r.get("manifold_per_param"),
                   "surrogate": r.get("surrogate"),
                   "max_abs_output_diff": r.get("max_abs_output_diff"), "screen_cost": r.get("screen_cost"),
                   "screen_seconds": r.get("screen_seconds"), "final_accuracy": r.get("final_accuracy"),
                   "final_loss": r.get("final_loss"), "final_val_accuracy": r.get("final_val_accuracy"),
                   "final_val_loss": r.get("final_val_loss"), "val_score": r.get("final_score"),
                   "test_score": r.get("final_test_score"), "train_cost": r.get("train_cost"),
                   "train_seconds": r.get("train_seconds"), "gain": r.get("gain"), "test_gain": r.get("test_gain")}
        metrics.update({f"manifold.{k}": (r.get("manifold") or {}).get(k) for k in PIECES})
        batch = [Metric(k, float(v), 0, 0) for k, v in metrics.items()
                 if isinstance(v, (int, float)) and math.isfinite(v)]
        history = r.get("history") or []
        for h in history[entry["epochs"]:]:
            batch += [Metric(k, float(h[k]), 0, int(h["epoch"])) for k in EPOCH_METRICS if k in h]
        tags = [RunTag("stage", stage)] + ([RunTag("reason", r["reason"][:5000])] if r.get("reason") else []) \
            + ([RunTag("surrogate", r["surrogate_name"])] if r.get("surrogate_name") else [])
        for i in range(0, len(batch), 900):  # MLflow caps a batch at 1000 entries
            self.client.log_batch(run_id, metrics=batch[i:i + 900], tags=tags if i == 0 else [],
                                  params=params if i == 0 else [])
        if not batch:
            self.client.log_batch(run_id, tags=tags, params=params)
        if STATUS.get(stage) == "RUNNING":
            self.client.update_run(run_id, status="RUNNING")
        else:
            self.client.set_terminated(run_id, status=STATUS.get(stage, "FINISHED"))
        entry["epochs"] = max(entry["epochs"], len(history))
        entry["stages"].append(stage)
        self._save(r["id"])

    def search_metric(self, name: str, value: float, step: int) -> None:
        """A metric of the whole search on the parent run (``surrogate_tau`` after each rung of a
        budgeted search), logged once per step: a resumed search replays earlier steps."""
        if self.ledger["parent"] is None or not math.isfinite(value):
            return
        logged = self.ledger.setdefault("search_steps", {})
        if step <= logged.get(name, -1):
            return

        def log() -> None:
            from mlflow.entities import Metric

            self.client.log_batch(self.ledger["parent"], metrics=[Metric(name, float(value), 0, step)])
            logged[name] = step
            self._save()

        self._guard(f"parent {name}", log)

    def search_metrics(self, values: dict[str, float]) -> None:
        """Final figures of the whole search on the parent run (a budgeted search's ``budget`` and ``spent``)."""
        if self.ledger["parent"] is None:
            return
        from mlflow.entities import Metric

        batch = [Metric(k, float(v), 0, 0) for k, v in values.items() if math.isfinite(v)]
        self._guard("parent metrics", self.client.log_batch, self.ledger["parent"], batch)

    def epoch(self, cid: str, rec: dict[str, float]) -> None:
        entry = self.ledger["children"].get(cid)
        if entry is None or cid in self.pending:
            return  # the reference (base) has no child run; gaps are filled from the record

        step = int(rec["epoch"])
        if step <= entry.get("epochs", 0):
            return  # logged already (a resumed stage hands its earlier epochs again)

        def log() -> None:
            from mlflow.entities import Metric

            self.client.log_batch(entry["run_id"], metrics=[
                Metric(k, float(rec[k]), 0, step) for k in EPOCH_METRICS if k in rec])
            entry["epochs"] = step
            self._save(cid)

        start = time.perf_counter()
        self._guard(cid, log)
        self._timed(start)

    def finish(self, out: Path, records: list[dict[str, Any]], best: dict[str, Any] | None,
               base_score: float | None = None, base_test_score: float | None = None) -> None:
        """Log what is missing; ``gain`` against the base's validation score, ``test_gain``
        against its test score."""
        for r in records:
            if r.get("stage") and r["id"] != "base":
                if base_score is not None and r.get("final_score") is not None:
                    r = {**r, "gain": r["final_score"] - base_score}
                if base_test_score is not None and r.get("final_test_score") is not None:
                    r = {**r, "test_gain": r["final_test_score"] - base_test_score}
                self.candidate(r)
        self._guard("artifacts", self._finish_parent, out, best)
        missing = sorted(self.pending)
        if missing:
            print(f"growsearch: warning: {len(missing)} item(s) not in MLflow yet ({', '.join(missing[:8])}); "
                  f"run 'growsearch sync {out}' when the tracking server is back", file=sys.stderr)

    def _finish_parent(self, out: Path, best: dict[str, Any] | None) -> None:
        parent = self.ledger["parent"]
        for name in ("leaderboard.csv", "leaderboard.md", "config.yaml"):
            if (out / name).exists():
                self.client.log_artifact(parent, str(out / name))
        if (out / "plots").is_dir():
            self.client.log_artifacts(parent, str(out / "plots"), "plots")
        if best is not None and (out / "best").is_dir():
            self.client.log_artifacts(parent, str(out / "best"), "best_model_checkpoint")
            self.client.set_tag(parent, "growsearch.best_candidate", best["id"])
            if self.ledger.get("best_model_logged") != best["id"]:
                self._log_pytorch_model(parent, out / "best")
                self.ledger["best_model_logged"] = best["id"]
        self.client.set_terminated(parent, status="FINISHED")
        self._save()

    def _log_pytorch_model(self, parent: str, checkpoint: Path) -> None:
        """The best model in MLflow's pytorch flavour, as a ``pt2`` (torch.export) program --
        loadable with ``mlflow.pytorch.load_model`` without unpickling anything."""
        import mlflow

        from growsearch.checkpoint import load_checkpoint
        from growsearch.data import load_dataset

        model, spec, meta = load_checkpoint(checkpoint)
        flavour = "transformers" if spec["family"] == "hf" else "pytorch"
        mlflow.set_tracking_uri(self.uri)
        with warnings.catch_warnings(), mlflow.start_run(run_id=parent):
            warnings.simplefilter("ignore")
            try:
                # requirements given explicitly: inferring them imports and times the whole environment
                if flavour == "transformers":  # the flavour HF users load: AutoModel classes, tokenizer
                    self._log_transformers_model(model, spec)
                else:
                    example = load_dataset(meta["dataset"]).x_train[:2].numpy()
                    mlflow.pytorch.log_model(model.eval(), name="best_model", input_example=example,
                                             serialization_format="pt2", pip_requirements=["torch", "growsearch"])
            except Exception as exc:
                print(f"growsearch: warning: could not log the best model in MLflow's {flavour} flavour "
                      f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); its safetensors checkpoint "
                      "is logged as best_model_checkpoint", file=sys.stderr)

    @staticmethod
    def _log_transformers_model(model: Any, spec: dict[str, Any]) -> None:
        """An HF best model in ``mlflow.transformers`` (with its tokenizer when it has one)."""
        import logging

        import mlflow
        from transformers import AutoTokenizer

        components: dict[str, Any] = {"model": model.hf.eval()}
        task = "text-generation" if model.task == "causal_lm" else "text-classification"
        if spec.get("tokenizer_dir"):
            components["tokenizer"] = AutoTokenizer.from_pretrained(spec["tokenizer_dir"], local_files_only=True)
        logging.getLogger("mlflow.transformers").setLevel(logging.ERROR)  # no model card: offline by design
        mlflow.transformers.log_model(components, name="best_model", task=task,
                                      pip_requirements=["torch", "transformers", "tokenizers"])


def make_tracker(spec: Any, out: str | Path, default_name: str) -> MLflowTracker | None:
    """The tracker a config asks for (None when tracking is off)."""
    if not spec.enabled:
        return None
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    quiet_library_logs()
    return MLflowTracker(spec.uri or default_uri(out), spec.experiment or default_name, out)


def load_model_from_run(run_id: str, tracking_uri: str) -> Any:
    """The best model of a search run, rebuilt from its safetensors checkpoint artifact
    (no unpickling): ``(model, spec, meta)``."""
    from mlflow.artifacts import download_artifacts

    from growsearch.checkpoint import load_checkpoint

    path = download_artifacts(run_id=run_id, artifact_path="best_model_checkpoint", tracking_uri=tracking_uri)
    return load_checkpoint(path)


def sync(out: str | Path) -> dict[str, int]:
    """Upload whatever a results folder has that its MLflow run lacks."""
    import yaml

    from growsearch.search.config import load_config

    out = Path(out)
    if not (out / "config.yaml").exists():
        raise ConfigError(f"sync: {out} holds no growsearch search")
    cfg = load_config(yaml.safe_load((out / "config.yaml").read_text()))
    tracker = make_tracker(cfg.tracking, out, default_experiment(cfg))
    if tracker is None:
        raise ConfigError("sync: tracking is disabled in this search's config")
    tracker.check()
    tracker.load_ledger()
    before = sum(len(c["stages"]) for c in tracker.ledger["children"].values())
    if tracker.ledger["parent"] is None:
        from growsearch.checkpoint import load_checkpoint

        base = out / "base"
        spec = load_checkpoint(base)[1] if (base / "spec.json").exists() else {}
        tracker._start_parent(cfg, spec, {})
    state = SearchState(out)
    records = state.records()
    reference = state.record("base")
    best = rerender(out) if (out / "leaderboard.csv").exists() else None
    base_score = reference.get("final_score") if reference else None
    tracker.finish(out, records, best, base_score, reference.get("final_test_score") if reference else None)
    after = sum(len(c["stages"]) for c in tracker.ledger["children"].values())
    return {"uploaded": after - before, "pending": len(tracker.pending)}


def default_experiment(cfg: Any) -> str:
    """Experiment name: the config's, else derived from the base model and the space."""
    if cfg.tracking.experiment:
        return cfg.tracking.experiment
    if cfg.name:
        return cfg.name
    base = cfg.base.pretrain.family + "-" + (cfg.base.pretrain.dataset or "default") if cfg.base.pretrain \
        else Path(cfg.base.name()).name
    return f"growsearch-{base}-{Path(cfg.space).stem}"
