"""Ray Tune as the executor: screening and full training as Tune trials.

* Screening: Optuna proposes through Ray Tune's ``OptunaSearch`` -- the search's own
  sampler (seeded) on the search's own study (the journal in the results folder), with
  the engine's :class:`~growsearch.search.engine.Proposer` as the define-by-run space, so
  ids, constraint rejections, repeats and records are exactly those of the local path.
* Training: one Tune trial per promoted candidate. With synchronous successive halving
  (the default) the engine runs one Tune run per stage -- every live candidate trains to
  the next rung (from its paused checkpoint, shipped to the worker) under a FIFO scheduler
  -- and decides the rung itself, so the outcome does not depend on concurrency or
  timing. With ``asha``, ``ASHAScheduler`` decides over epochs as results arrive.
* One Tune report per rung (where ASHA decides; with a checkpoint, so a stopped trial
  keeps its model) and one at the end: the per-epoch records ride along in those reports
  and still reach the records and MLflow, without a round trip per epoch.
* Resources per trial (``cpus_per_trial``, fractional ``gpus_per_trial``),
  ``max_concurrent_trials``, ``reuse_actors`` and ``FailureConfig(max_failures)`` come
  from the config. A trial on a GPU trains on the GPU Ray assigned to it.
* Local by default: ``ray.init()`` in this process, listening on 127.0.0.1, a private
  temp dir, dashboard off, auth disabled for that instance; started and shut down here.
  With ``executor.address`` (``auto``, ``ray://host:port``) it joins an existing cluster.

Order: a sampler that learns from finished trials (TPE, NSGA-II) asks for the next
candidate only once every earlier one is told, so its proposals do not depend on which
trial finished first (screening runs one candidate at a time; the random sampler, whose
proposals depend on the seed alone, screens ``max_concurrent_trials`` at once). Resume
is the engine's: finished trials are read back from the results folder and only
unfinished ones are run again (the equivalent of ``Tuner.restore``, which also covers
trials lost with a killed driver).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from growsearch.checkpoint import save_checkpoint
from growsearch.errors import ConfigError
from growsearch.search.config import OBJECTIVES, ExecutorSpec, SearchConfig, objective_values
from growsearch.search.executors import Executor, TrainJob, proposal
from growsearch.search.schedulers import ASHA, Scheduler, finite_score
from growsearch.search.trials import SearchContext, relative_to_results, screen_candidate, train_candidate


def trial_device(gpu_ids: list[Any]) -> torch.device:
    """The device of a trial given ``ray.get_gpu_ids()``: Ray restricts
    CUDA_VISIBLE_DEVICES to the GPUs it assigned, so the first visible one is ours
    (shared with other trials when the trial holds a fraction of it)."""
    return torch.device("cuda:0") if gpu_ids else torch.device("cpu")


def assigned_device() -> tuple[torch.device, dict[str, Any] | None]:
    """This trial's device, and what Ray gave it when it holds a GPU (or a fraction of one):
    ``{"ids", "cuda_visible_devices", "device", "node", "start"}`` -- kept in the candidate's
    record, so a search on a GPU cluster says where each candidate ran. A worker whose torch
    sees no CUDA device (a CPU build, or a node that declares GPUs it lacks) falls back to
    the CPU and says so in ``device``."""
    import time

    import ray

    ids = ray.get_gpu_ids()
    if not ids:
        return torch.device("cpu"), None
    device = trial_device(ids) if torch.cuda.is_available() else torch.device("cpu")
    return device, {"ids": [str(i) for i in ids], "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                    "device": str(device), "node": ray.get_runtime_context().get_node_id(), "start": time.time()}


def _gpu_done(gpu: dict[str, Any] | None) -> dict[str, Any]:
    """The ``gpu`` field of a record (nothing for a CPU-only trial), with its end time."""
    import time

    return {} if gpu is None else {"gpu": {**gpu, "end": time.time()}}


class DriverOnly:
    """Holds driver-side objects (the proposer with its progress bar and tracker).

    Tune pickles its searcher and callbacks into the experiment folder for
    ``Tuner.restore``; these objects never leave the driver, so they pickle as empty."""

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.obj = None


def seeded_optuna_search(driver: DriverOnly, **kwargs: Any) -> Any:
    """Ray Tune's OptunaSearch, with the sampler re-created before every ask exactly as the
    local executor does (:meth:`Proposer.sampler`: the seed mixed with the number of asks so
    far by :func:`~growsearch.search.engine.ask_seed`, under the folder's seed scheme):
    with one trial at a time both paths propose the same candidates."""
    from ray.tune.search.optuna import OptunaSearch

    class _Seeded(OptunaSearch):
        def suggest(self, trial_id: str) -> Any:
            proposer = driver.obj
            if proposer is not None and proposer.cfg.sampler.name != "random" and \
                    proposer.issued > proposer.recorded():
                # a sampler that learns from finished trials asks once the earlier candidates
                # are told: its proposals then do not depend on which trial finished first
                return None
            while True:
                if proposer is not None:
                    if proposer.exhausted:
                        return OptunaSearch.FINISHED
                    if self._ot_study is not None:
                        self._ot_study.sampler = proposer.sampler()
                config = super().suggest(trial_id)
                if proposer is None or config.get("record") is not None:
                    return config
                # a repeat of an earlier candidate: the proposer told Optuna its value; ask again
                self._ot_trials.pop(trial_id, None)

    return _Seeded(**kwargs)


class ProposerSpace:
    """OptunaSearch's define-by-run space: the engine's proposer turns each Optuna trial
    into a candidate record (module-level, because OptunaSearch saves it with pickle)."""

    def __init__(self, driver: DriverOnly, numbers: dict[str, int], cpus: float = 1.0) -> None:
        self.driver, self.numbers, self.cpus = driver, numbers, cpus

    def __call__(self, trial: Any) -> dict[str, Any]:
        record = self.driver.obj.suggest(trial)  # None: a repeat, asked again by the searcher
        if record is not None:
            self.numbers[record["id"]] = trial.number
        return {"record": record, "cpus": self.cpus}


def _first_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:500] if lines else "unknown error"


def _probe(address: str) -> None:
    """A quick TCP check of ``ray://host:port`` / ``host:port`` (Ray's client would retry for
    ~30 s); ``auto`` is left to Ray, which answers at once when no cluster runs here."""
    import socket

    target = address[len("ray://"):] if address.startswith("ray://") else address
    if address == "auto" or ":" not in target:
        return
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            return
    except (OSError, ValueError):
        raise ConfigError(f"executor.address: cannot reach a Ray cluster at {address!r} (nothing answers at "
                          f"{host}:{port}); start one or leave address unset for a local instance") from None


def local_gpus() -> int:
    """GPUs a local Ray instance would offer (what CUDA sees)."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def check_resources(spec: ExecutorSpec, offered: dict[str, float], where: str) -> None:
    """Refuse, before any compute, a trial that asks for more than ``offered`` (the biggest
    node's CPUs and GPUs): Ray would keep it pending forever."""
    for key, field in (("CPU", "cpus_per_trial"), ("GPU", "gpus_per_trial")):
        wanted = float(getattr(spec, field))
        have = float(offered.get(key, 0.0))
        if wanted > have + 1e-9:
            raise ConfigError(f"executor.{field}: got {wanted:g}; {where} offers at most {have:g} "
                              f"{key}{'s' if have != 1 else ''} per trial, so no trial could ever start "
                              f"(allowed: 0..{have:g}" + (", or 0 for CPU-only trials" if key == "GPU" else "") + ")")


def largest_node() -> dict[str, float]:
    """The most CPUs and GPUs one alive node of the connected cluster has: a trial runs on
    one node, so the cluster's total is not what a trial can get."""
    import ray

    best = {"CPU": 0.0, "GPU": 0.0}
    for node in ray.nodes():
        if node.get("Alive"):
            for key in best:
                best[key] = max(best[key], float(node.get("Resources", {}).get(key, 0.0)))
    return best


def _wait_for_a_node(spec: ExecutorSpec, console: Callable[[str], None] | None) -> None:
    """Refuse a trial no node of the cluster can hold -- or, with ``resource_timeout_s``,
    ask the autoscaler for one and wait that long, saying what is waited for."""
    import time

    where = f"the Ray cluster at {spec.address!r} (its largest node)"
    try:
        check_resources(spec, largest_node(), where)
        return
    except ConfigError as exc:
        if spec.resource_timeout_s <= 0:
            raise ConfigError(f"{exc}; on an autoscaling cluster set executor.resource_timeout_s to wait for "
                              "such a node") from None
    bundle = {"CPU": spec.cpus_per_trial, **({"GPU": spec.gpus_per_trial} if spec.gpus_per_trial else {})}
    try:
        from ray.autoscaler.sdk import request_resources

        request_resources(bundles=[bundle])
    except Exception:  # a cluster without an autoscaler: waiting may still see a node join
        pass
    if console is not None:
        console(f"waiting up to {spec.resource_timeout_s:g} s for a node with {bundle} (autoscaling)")
    deadline = time.monotonic() + spec.resource_timeout_s
    while time.monotonic() < deadline:
        time.sleep(min(5.0, max(0.1, deadline - time.monotonic())))
        try:
            check_resources(spec, largest_node(), where)
            return
        except ConfigError:
            continue
    check_resources(spec, largest_node(), where + f" after waiting {spec.resource_timeout_s:g} s")


@contextlib.contextmanager
def _keep_sigterm_handler() -> Iterator[None]:
    """``ray.init`` replaces the SIGTERM handler with ``sys.exit``; the caller's stays (the
    CLI turns SIGTERM into an interruption, exit 143, like Ctrl-C)."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None
    try:
        yield
    finally:
        if main and previous is not None:
            signal.signal(signal.SIGTERM, previous)


def connect(spec: ExecutorSpec, console: Callable[[str], None] | None = None) -> bool:
    """Connect to (or start) Ray; True when this call started a local instance."""
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # the local instance only; clusters keep theirs
    # one small checkpoint per epoch is the point (early-stopped trials keep their model)
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Tune's new console output ignores verbose=0 and writes to stdout; growsearch shows its own
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Ctrl-C must stop the search (Tune's own handler ends the run and returns as if finished,
    # so the engine would promote and train on partial results)
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    with _keep_sigterm_handler():
        if spec.address:
            _probe(spec.address)
            try:
                ray.init(address=spec.address, log_to_driver=False, configure_logging=False)
            except Exception as exc:
                raise ConfigError(f"executor.address: cannot reach a Ray cluster at {spec.address!r} "
                                  f"({type(exc).__name__}); start one or leave address unset for a "
                                  "local instance") from None
            try:
                _wait_for_a_node(spec, console)
            except BaseException:
                ray.shutdown()  # disconnect only: the cluster is not ours
                raise
            return False
        check_resources(spec, {"CPU": float(os.cpu_count() or 1), "GPU": float(local_gpus())}, "this machine")
        stopped = stop_stale_local_instances()
        if stopped and console is not None:
            console(f"stopped {stopped} process(es) of local Ray instances left by killed searches")
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, configure_logging=False,
                 _temp_dir=_local_temp_dir(), _node_ip_address="127.0.0.1")
        if console is not None:
            console("started a local Ray instance on 127.0.0.1 (dashboard off, auth disabled); "
                    "set executor.address to use a cluster")
        return True


RAY_TEMP_PREFIX = "growsearch-ray-"
DRIVER_FILE = "growsearch-driver.json"  # in a local instance's temp dir: which process started it


def _local_temp_dir() -> str:
    """A fresh temp dir for a local Ray instance, naming this process as its driver."""
    import psutil

    path = tempfile.mkdtemp(prefix=RAY_TEMP_PREFIX)
    me = psutil.Process()
    Path(path, DRIVER_FILE).write_text(json.dumps({"pid": me.pid, "created": me.create_time()}))
    return path


def stop_stale_local_instances(temp_root: str | Path | None = None, grace: float = 5.0) -> int:
    """Stop what is left of local Ray instances whose growsearch driver is gone.

    After ``kill -9`` of a search alone (not its process group), Ray's agents of its
    instance (``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``) keep running. Each local
    instance's temp dir names its driver (pid and start time, so a reused pid is no
    alibi); for a dead driver, every process of this user that has the temp dir in its
    command line or open files gets SIGTERM, then SIGKILL after ``grace`` seconds (the
    agents may not exit on SIGTERM). Another running search's instance is left alone.
    Returns the number of processes stopped."""
    import psutil

    root = Path(temp_root or tempfile.gettempdir())
    stale: list[Path] = []
    for directory in root.glob(RAY_TEMP_PREFIX + "*"):
        try:
            driver = json.loads((directory / DRIVER_FILE).read_text())
            pid, created = int(driver["pid"]), float(driver["created"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not ours, or its driver file is gone (handled before)
        try:
            if abs(psutil.Process(pid).create_time() - created) < 1.0:
                continue  # its driver still runs
        except psutil.Error:
            pass
        stale.append(directory)
    if not stale:
        return 0
    marks = [str(d) for d in stale]
    me, uid = os.getpid(), os.getuid()
    leftovers = []
    for proc in psutil.process_iter(["pid", "uids", "cmdline"]):
        try:
            if proc.pid == me or proc.info["uids"] is None or proc.info["uids"].real != uid:
                continue
            cmdline = " ".join(proc.info["cmdline"] or [])
            if any(m in cmdline for m in marks) or (
                    cmdline.startswith("ray::") and any(m in f.path for f in proc.open_files() for m in marks)):
                leftovers.append(proc)
        except psutil.Error:
            continue
    for proc in leftovers:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(leftovers, timeout=grace)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=grace)
    for directory in stale:  # handled: not scanned again (its logs stay)
        (directory / DRIVER_FILE).unlink(missing_ok=True)
    return len(leftovers)


def _screen_trial(config: dict[str, Any], ctx: SearchContext, objectives: list[str]) -> None:
    from ray import tune

    torch.set_num_threads(max(1, int(config["cpus"])))
    record = config["record"]
    if record.get("stage") != "rejected":
        device, gpu = assigned_device()
        record = {**record, **screen_candidate(ctx, record["id"], record["plan"], record["init"], device),
                  **_gpu_done(gpu)}
    metrics = dict(zip(objectives, objective_values(record, objectives), strict=True))
    tune.report({**metrics, "record": json.dumps(record)})


def _pack(directory: str | Path) -> dict[str, bytes]:
    """The files of a (paused) checkpoint folder, to ship to a worker on any node."""
    return {p.name: p.read_bytes() for p in Path(directory).iterdir() if p.is_file()}


def _train_trial(config: dict[str, Any], ctx: SearchContext, resume_files: dict[str, dict[str, bytes]]) -> None:
    from ray import tune

    torch.set_num_threads(max(1, int(config["cpus"])))
    job = config["job"]
    device, gpu = assigned_device()
    workdir = Path(tempfile.mkdtemp(prefix="growsearch-trial-"))
    resume = None
    if job.get("resume"):
        resume = workdir / "resume"
        resume.mkdir()
        for name, data in resume_files[job["id"]].items():
            (resume / name).write_bytes(data)
    pending: list[dict[str, float]] = []  # per-epoch records since the last report

    def report(rec: dict[str, float], model: torch.nn.Module, spec: dict[str, Any]) -> None:
        # one Tune round trip per rung (where ASHA decides), not per epoch: the epochs in
        # between ride along in that report, and the rest in the final record
        pending.append({k: float(v) for k, v in rec.items()})
        if int(rec["epoch"]) not in config["report_epochs"]:
            return
        # ASHA stops a trial only right after a rung report: a checkpoint there keeps the
        # model of every stopped trial
        ckpt = workdir / f"epoch{int(rec['epoch'])}"
        save_checkpoint(ckpt, model, spec, {"dataset": ctx.dataset, "candidate": job["id"], "epoch": rec["epoch"]})
        tune.report({**pending[-1], "score": finite_score(pending[-1]["score"]), "epochs": json.dumps(pending)},
                    checkpoint=tune.Checkpoint.from_directory(str(ckpt)))
        pending.clear()
        shutil.rmtree(ckpt, ignore_errors=True)

    record = train_candidate(ctx, job["id"], job["plan"], job["init"], on_epoch=report, device=device,
                             checkpoint_dir=workdir / "final", until=job.get("until"), resume=resume)
    record.pop("checkpoint", None)  # a worker-local path: the driver keeps Tune's checkpoint instead
    record.update(_gpu_done(gpu))
    last = record["history"][-1] if record["history"] else {"epoch": 0, "score": float("-inf")}
    final = workdir / "final"
    tune.report({"epoch": float(last["epoch"]), "score": finite_score(float(last["score"])),
                 "growsearch_final": 1.0, "record": json.dumps(record)},
                checkpoint=tune.Checkpoint.from_directory(str(final)) if final.exists() else None)
    shutil.rmtree(workdir, ignore_errors=True)


def tune_asha(spec: Any, epochs: int, replayed: ASHA) -> Any:
    """Tune's ``ASHAScheduler`` for ``early_stopping`` ``spec``, knowing the rung scores of
    the trainings finished before a resume (the engine replayed them into ``replayed``): a
    resumed search then stops exactly the trials an uninterrupted one stops, instead of
    judging the rest against nothing."""
    from ray.tune.schedulers import ASHAScheduler

    asha = ASHAScheduler(time_attr="epoch", metric="score", mode="max", max_t=epochs,
                         grace_period=spec.grace_epochs, reduction_factor=spec.reduction_factor)
    earlier = {rung: scores for rung, scores in replayed.recorded.items() if scores}
    if earlier:
        # Tune has no public way to seed its rungs: its one bracket's (milestone, {trial: score}) list
        brackets = getattr(asha, "_brackets", None)
        if not brackets or len(brackets) != 1 or not hasattr(brackets[0], "_rungs"):
            raise RuntimeError("this Ray version's ASHAScheduler cannot be told the rung scores of trainings "
                               "finished before the resume; use early_stopping.policy: successive_halving")
        for milestone, recorded in brackets[0]._rungs:
            recorded.update({f"finished-{cid}": score for cid, score in earlier.get(int(milestone), {}).items()})
    return asha


class RayExecutor(Executor):
    name = "ray"

    def __init__(self, ctx: SearchContext, cfg: SearchConfig, console: Callable[[str], None] | None = None) -> None:
        super().__init__(ctx)
        self.cfg = cfg
        self.spec = cfg.executor
        self.started = connect(self.spec, console)  # False when the engine connected already
        self.storage = Path(self.spec.storage_path or Path(ctx.out).resolve() / "ray")

    def _resources(self) -> dict[str, float]:
        return {"cpu": self.spec.cpus_per_trial, "gpu": self.spec.gpus_per_trial}

    def _run_config(self, name: str, callback: Any) -> Any:
        from ray import tune

        return tune.RunConfig(name=name, storage_path=str(self.storage), verbose=0, callbacks=[callback],
                              failure_config=tune.FailureConfig(max_failures=self.spec.max_failures),
                              checkpoint_config=tune.CheckpointConfig(num_to_keep=1))

    # -- screening --------------------------------------------------------------------
    def screen(self, study: Any, proposer: Any, storage: Any) -> None:
        from ray import tune

        objectives = self.cfg.objectives
        modes = ["max" if OBJECTIVES[o] == "maximize" else "min" for o in objectives]
        driver = DriverOnly(proposer)
        numbers: dict[str, int] = {}
        single = len(objectives) == 1
        searcher = seeded_optuna_search(driver, space=ProposerSpace(driver, numbers, self.spec.cpus_per_trial),
                                        metric=objectives[0] if single else objectives,
                                        mode=modes[0] if single else modes, sampler=proposer.sampler(),
                                        study_name=study.study_name, storage=storage)

        class Records(tune.Callback):
            def on_trial_complete(self, iteration, trials, trial, **info):
                record = json.loads(trial.last_result["record"])
                if trial.num_failures:  # its worker died (a lost node): Tune ran it again
                    record["retries"] = trial.num_failures
                driver.obj.done(numbers[record["id"]], record, told=True)

            def on_trial_error(self, iteration, trials, trial, **info):  # a lost worker: retried on resume
                record = {**trial.config["record"], "stage": "failed", "retry": True,
                          "reason": _first_line(trial.get_error() or "worker died")}
                driver.obj.done(numbers[record["id"]], record, told=True)

        trainable = tune.with_resources(tune.with_parameters(_screen_trial, ctx=self.ctx, objectives=objectives),
                                        self._resources())
        tuner = tune.Tuner(trainable, tune_config=tune.TuneConfig(
            search_alg=searcher, num_samples=proposer.remaining(), reuse_actors=True,
            max_concurrent_trials=self.spec.max_concurrent_trials),
            run_config=self._run_config(f"screen-{proposer.issued:04d}", Records()))
        tuner.fit()
        self._screen_lost_again(proposer)

    def _screen_lost_again(self, proposer: Any) -> None:
        """Screen once more, in this run, the candidates whose trials failed for the
        environment's reasons after ``max_failures`` retries -- typically a lost node: Ray
        may place the retries on the dead node before it is declared dead (seconds to a
        minute), and they fail there too. By now the node is known dead, so they land on
        the others; without this the search stopped and asked for ``--resume``."""
        lost = [r for r in proposer.state.records()
                if r.get("stage") == "failed" and r.get("retry") and "history" not in r]
        if lost:
            self.rescreen(lost, proposer, retried=self.spec.max_failures + 1)

    def rescreen(self, records: list[dict[str, Any]], proposer: Any, retried: int = 0) -> None:
        """The same candidates again, as one Tune run over their recorded proposals; the
        engine tells the study (their trials are still running in it). ``retried``: the
        failed attempts before this run, counted in the records' ``retries``."""
        from ray import tune

        objectives = self.cfg.objectives
        driver = DriverOnly(proposer)

        class Records(tune.Callback):
            def on_trial_complete(self, iteration, trials, trial, **info):
                record = json.loads(trial.last_result["record"])
                if retried or trial.num_failures:
                    record["retries"] = retried + trial.num_failures
                driver.obj.done(record["trial"], record)

            def on_trial_error(self, iteration, trials, trial, **info):
                record = {**trial.config["record"], "stage": "failed", "retry": True,
                          "reason": _first_line(trial.get_error() or "worker died")}
                driver.obj.done(record["trial"], record)

        trainable = tune.with_resources(tune.with_parameters(_screen_trial, ctx=self.ctx, objectives=objectives),
                                        self._resources())
        param_space = {"record": tune.grid_search([proposal(r) for r in records]), "cpus": self.spec.cpus_per_trial}
        tuner = tune.Tuner(trainable, param_space=param_space, tune_config=tune.TuneConfig(
            reuse_actors=True, max_concurrent_trials=self.spec.max_concurrent_trials),
            run_config=self._run_config(f"rescreen-{records[0]['id']}", Records()))
        tuner.fit()

    # -- training ---------------------------------------------------------------------
    def train(self, jobs: list[TrainJob], scheduler: Scheduler,
              on_epoch: Callable[[str, dict[str, float]], None] | None = None,
              on_record: Callable[[dict[str, Any]], None] = lambda r: None) -> None:
        from ray import tune
        from ray.tune.schedulers import FIFOScheduler

        out = Path(self.ctx.out)
        driver = DriverOnly((on_epoch, on_record))
        epochs = self.cfg.training.epochs

        class Records(tune.Callback):
            """Per-epoch records arrive with the rung reports and the final record; each
            goes to ``on_epoch`` once, in order."""

            def __init__(self) -> None:
                self.history: dict[str, list[dict[str, float]]] = {}

            def _epochs(self, cid: str, records: list[dict[str, float]]) -> None:
                history = self.history.setdefault(cid, [])
                for rec in records:
                    if not history or rec["epoch"] > history[-1]["epoch"]:
                        history.append(rec)
                        if driver.obj is not None and driver.obj[0] is not None:
                            driver.obj[0](cid, rec)

            def on_trial_result(self, iteration, trials, trial, result, **info):
                if "epochs" in result:
                    self._epochs(trial.config["job"]["id"], json.loads(result["epochs"]))

            def on_trial_complete(self, iteration, trials, trial, **info):
                job = trial.config["job"]
                if "record" in trial.last_result:
                    record = json.loads(trial.last_result["record"])
                    self._epochs(job["id"], record["history"])
                else:  # stopped by ASHA right after a rung report
                    history = self.history.get(job["id"], [])
                    last = history[-1] if history else {}
                    full = len(history) >= epochs
                    record = {"id": job["id"], "stage": "completed" if full else "stopped_early", "history": history,
                              "epochs": len(history), "final_accuracy": last.get("test_accuracy"),
                              "final_loss": last.get("test_loss"), "final_val_accuracy": last.get("val_accuracy"),
                              "final_val_loss": last.get("val_loss"), "final_score": last.get("score"),
                              "final_test_score": last.get("test_score"), "train_cost": last.get("forward_backward")}
                record["retries"] = trial.num_failures
                if trial.checkpoint is not None and record.get("stage") != "failed":
                    target = out / "candidates" / job["id"]
                    shutil.rmtree(target, ignore_errors=True)
                    shutil.copytree(trial.checkpoint.path, target)
                    record["checkpoint"] = relative_to_results(target, out)
                driver.obj[1](record)

            def on_trial_error(self, iteration, trials, trial, **info):  # a lost worker: retried on resume
                job = trial.config["job"]
                driver.obj[1]({"id": job["id"], "stage": "failed", "history": self.history.get(job["id"], []),
                               "retry": True, "reason": _first_line(trial.get_error() or "worker died")})

        resume_files = {j.id: _pack(j.resume) for j in jobs if j.resume}
        # the reference (not early-stopped) and the promoted candidates (under ASHA) are two Tune runs
        for scheduled in (False, True):
            group = [j for j in jobs if j.schedule == scheduled]
            if not group:
                continue
            asha = scheduled and isinstance(scheduler, ASHA)
            tune_scheduler = tune_asha(self.cfg.early_stopping, epochs, scheduler) if asha else FIFOScheduler()
            trainable = tune.with_resources(
                tune.with_parameters(_train_trial, ctx=self.ctx, resume_files=resume_files), self._resources())
            param_space = {"job": tune.grid_search([{"id": j.id, "plan": j.plan, "init": j.init, "until": j.until,
                                                     "resume": bool(j.resume)} for j in group]),
                           "report_epochs": [r for r in scheduler.rungs if r < epochs] if asha else [],
                           "cpus": self.spec.cpus_per_trial}
            stage = f"-e{group[0].until}" if group[0].until else ""
            tuner = tune.Tuner(trainable, param_space=param_space, tune_config=tune.TuneConfig(
                scheduler=tune_scheduler, reuse_actors=True, max_concurrent_trials=self.spec.max_concurrent_trials),
                run_config=self._run_config(f"train-{group[0].id}{stage}", Records()))
            tuner.fit()


    def close(self) -> None:
        import ray

        if self.started and ray.is_initialized():
            ray.shutdown()
