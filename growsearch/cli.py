"""The ``growsearch`` command line: a thin layer over the Python API.

Every user error is one line on stderr and exit code 2; ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from growsearch._validate import read_yaml
from growsearch.errors import ConfigError, GrowsearchError, IncompleteSearchError

EXIT_USAGE = 2


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps hand-wrapped descriptions; shows defaults only where there is one worth saying."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False, "", argparse.SUPPRESS):
            return action.help or ""
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (argparse prints the usage block first)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _console():  # rich is imported lazily: `growsearch --help` should be instant
    from rich.console import Console

    console = Console(stderr=True)
    if not console.is_terminal:  # logs and pipes: wide enough for the leaderboard
        console = Console(stderr=True, width=140)
    return console


# -- pretrain -------------------------------------------------------------------------
def cmd_pretrain(args: argparse.Namespace) -> int:
    from growsearch.pretrain import pretrain

    check_out_dir(args.out)
    console = _console()
    with console.status(f"pretraining a {args.family} on {args.dataset or 'its default dataset'}"):
        _, spec, result = pretrain(args.family, args.dataset, out=args.out, epochs=args.epochs,
                                   seed=args.seed, device=args.device)
    meta = json.loads((Path(args.out) / "meta.json").read_text())
    summary = {k: meta[k] for k in ("family", "dataset", "params", "test_accuracy", "test_loss", "seconds")}
    if args.json:
        print(json.dumps({**summary, "out": str(args.out), "spec": spec}))
    else:
        console.print(f"[green]saved[/] {args.out}: {summary['params']} params, test accuracy "
                      f"{summary['test_accuracy']:.3f}, {result.seconds:.1f}s")
    return 0


# -- grow -----------------------------------------------------------------------------
def plan_from_args(args: argparse.Namespace):
    """An ExpansionPlan from ``--plan FILE`` with ``--width/--depth`` on top."""
    from growsearch.grow import ExpansionPlan

    data: dict[str, Any] = {}
    if args.plan:
        data = read_yaml(args.plan, "--plan") or {}
        if not isinstance(data, dict):
            raise ConfigError(f"--plan: {args.plan} must hold a mapping of plan fields")
    if args.width is not None:
        data["width"] = args.width
    if args.depth is not None:
        data["depth"] = args.depth
    return ExpansionPlan.from_dict(data)


def load_base(source: str, dataset: str | None = None):
    """A base model (checkpoint directory or ``hf:PATH``) and its training data, if known:
    ``--dataset`` or the checkpoint's own; user data for an HF model is tokenised with
    that model's tokenizer."""
    from growsearch.checkpoint import load_base_model
    from growsearch.data import check_dataset_name, load_dataset
    from growsearch.models import config_from_spec

    model, spec, meta = load_base_model(source)
    name = dataset or meta.get("dataset")
    task = None
    if name:
        check_dataset_name(name)
        name = config_from_spec(spec).dataset_ref(name)
        task = load_dataset(name)
        meta = {**meta, "dataset": name}
        if spec["family"] == "vision":  # a timm/torchvision model fixes its input shape: checked on two examples
            _check_images(model, task, source)
    return model, spec, meta, task


def _check_images(model, task, source: str) -> None:
    import torch

    try:
        with torch.no_grad():
            logits = model.eval()(task.x_train[:2])
    except (RuntimeError, ValueError, IndexError, AssertionError) as exc:
        raise ConfigError(f"--dataset: {task.name} inputs of shape {tuple(task.x_train.shape[1:])} do not fit "
                          f"{source} ({str(exc).splitlines()[0][:120]}); allowed: images of the base's input_size") \
            from None
    if logits.shape[-1] < task.num_classes:
        raise ConfigError(f"--dataset: {task.name} has {task.num_classes} classes but {source} outputs "
                          f"{logits.shape[-1]}; allowed: a dataset with at most {logits.shape[-1]} classes")


def check_out_dir(out: str | Path, what: str = "--out", protect: tuple[str | Path, ...] = ()) -> None:
    """Refuse an output folder that is a file, or that is one of ``protect`` (its inputs)."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{what}: {path} is a file; allowed: a folder (new or existing)")
    for other in protect:
        if Path(other).exists() and path.exists() and path.resolve() == Path(other).resolve():
            raise ConfigError(f"{what}: {path} is the input checkpoint; allowed: another folder "
                              "(growing must not overwrite its base)")


def cmd_grow(args: argparse.Namespace) -> int:
    from growsearch.checkpoint import save_checkpoint
    from growsearch.grow import fold_mask, grow, growth_mask, output_diff

    if args.out:
        check_out_dir(args.out, protect=(args.checkpoint.removeprefix("hf:"),))
    plan = plan_from_args(args)
    model, spec, meta, task = load_base(args.checkpoint, args.dataset)
    probe = task.probe(256, seed=args.seed)[0] if task is not None else None
    result = grow(model, spec, plan, init=args.init, seed=args.seed, probe=probe)
    report = result.report()
    if args.out:
        saved = result
        mask = growth_mask(result.model)
        if mask is not None:  # masked: the mask ramps in training; a saved model is a plain one
            import torch

            from growsearch.models import config_from_spec

            if mask.fold_is_exact:  # folded at 0: new units' outgoing weights zero, the function kept
                fold_mask(result.model)
                result.notes.append("masked growth ramps its mask in training; saved untrained, it is folded at 0 "
                                    "(new units' outgoing weights zero: the zero_out growth)")
            else:  # no plain model equals it: a norm spans widened units (growsearch.grow.mask)
                saved = grow(model, spec, plan, init="zero_out", seed=args.seed, probe=probe)
                report["saved_init"] = "zero_out"
                result.notes.append("masked growth ramps its mask in training, and folded at 0 it would change "
                                    "the function (a LayerNorm/RMSNorm spans widened units): saved untrained as "
                                    "the zero_out growth (split where a norm spans the units)")
                result.notes.extend(saved.notes)
            x = probe if probe is not None else config_from_spec(spec).example_input(
                64, torch.Generator().manual_seed(args.seed))
            report["saved_max_abs_output_diff"] = output_diff(model, saved.model, x, torch.float64)
        save_checkpoint(args.out, saved.model, saved.spec,
                        {**{k: meta.get(k) for k in ("dataset",)}, "grown_from": str(args.checkpoint),
                         "growth": {k: v for k, v in report.items() if k != "spec"}})
        report["out"] = str(args.out)
    if args.json:
        print(json.dumps(report))
    else:
        console = _console()
        console.print(f"{plan.describe()} ({plan.kind}, init={args.init}): "
                      f"{result.params_before} -> {result.params_after} params, "
                      f"max |output diff| = {result.max_abs_output_diff:.2e}")
        for note in result.notes:
            console.print(f"[yellow]note:[/] {note}")
        if args.out:
            console.print(f"[green]saved[/] {args.out}")
    return 0


# -- score ----------------------------------------------------------------------------
def cmd_score(args: argparse.Namespace) -> int:
    from growsearch.metrics import ManifoldConfig, score_candidate
    from growsearch.pretrain import DEFAULT_RECIPES

    plan = plan_from_args(args)
    model, spec, meta, task = load_base(args.checkpoint, args.dataset)
    if task is None:
        raise ConfigError(f"--dataset: {args.checkpoint} names no dataset; score needs the training data")
    overrides = read_yaml(args.manifold, "--manifold") if args.manifold else {}
    manifold = ManifoldConfig.from_dict({**(overrides or {}), "seed": args.seed})
    recipe = DEFAULT_RECIPES.get(meta["dataset"], DEFAULT_RECIPES["mnist1d"])
    with _console().status("scoring"):
        _, scores = score_candidate(model, spec, task, plan, args.init, seed=args.seed, manifold=manifold,
                                    proxies=args.proxies == "all",
                                    short_recipe=recipe if args.proxies == "all" else None,
                                    variants={} if args.proxies == "all" else None)
    if args.json:
        print(json.dumps(scores))
    else:
        _console().print(f"{scores['plan_name']} ({args.init}): manifold_metric = "
                         f"{scores['manifold_metric']:.4f}, {scores['params']} params, cost "
                         f"{scores['cost']['forward_backward']:.0f} fwd+bwd examples, "
                         f"{scores['cost']['seconds']:.2f}s")
    return 0


# -- bench ----------------------------------------------------------------------------
def _progress_bar(description: str):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeRemainingColumn(), TextColumn("{task.fields[last]}"), console=_console())
    return progress, progress.add_task(description, total=None, last="")


def cmd_bench_predictors(args: argparse.Namespace) -> int:
    from growsearch.bench.predictors import run_predictor_benchmark
    from growsearch.metrics import ManifoldConfig

    overrides = (read_yaml(args.manifold, "--manifold") or {}) if args.manifold else None

    def runner(pool, progress):
        manifold = ManifoldConfig.from_dict({**pool.manifold, **overrides}) if overrides is not None else None
        return run_predictor_benchmark(pool, manifold, jobs=args.jobs, progress=progress, rescore=rescore)

    rescore = _earlier_result(args.rescore, "--rescore", "predictors", "candidates") if args.rescore else None

    result = _run_pool_bench(args, "pool", runner)
    table = {k: round(v["kendall"], 3) for k, v in result["predictors"].items()}
    _console().print(f"[green]wrote[/] {args.out}: Kendall tau vs gain {table}; "
                     f"metric cost ratio {result['metric_cost_ratio']:.3f}")
    return 0


def _run_pool_bench(args: argparse.Namespace, title: str, runner: Any) -> dict[str, Any]:
    """Run ``runner(pool, progress=...)`` on ``--pool`` with a progress bar; write ``--out``."""
    from growsearch.bench.pools import get_pool
    from growsearch.checkpoint import write_json

    pool = get_pool(args.pool, quick=args.quick)
    progress, task = _progress_bar(f"{title}, {pool.name}")
    with progress:
        result = runner(pool, progress=lambda d, t, n: progress.update(task, completed=d, total=t, last=n))
    result["command"] = f"growsearch bench {args.bench} " + " ".join(sys.argv[3:])
    write_json(args.out, result)
    return result


def _checked_seeds(seeds: list[int], at_least: int = 1, distinct: bool = False, why: str = "") -> tuple[int, ...]:
    """``--seeds`` of a benchmark as a tuple, or one line naming what is allowed."""
    if len(seeds) < at_least or any(seed < 0 for seed in seeds) or (distinct and len(set(seeds)) != len(seeds)):
        count = "" if at_least < 2 else f"{'two' if at_least == 2 else at_least} or more "
        allowed = f"{count}{'distinct ' if distinct else ''}non-negative integers{f' ({why})' if why else ''}"
        raise ConfigError(f"--seeds: got {seeds}; allowed: {allowed}")
    return tuple(seeds)


def cmd_bench_growth(args: argparse.Namespace) -> int:
    from growsearch.bench.growth import run_growth_benchmark

    seeds = None if args.seeds is None else _checked_seeds(args.seeds, at_least=2, distinct=True,
                                                           why="the paired interval needs two")

    def runner(pool, progress):
        return run_growth_benchmark(pool, progress=progress, all_plans=args.all_plans, seeds=seeds)

    result = _run_pool_bench(args, "growth vs scratch", runner)
    for init, s in result["summary"].items():
        _console().print(f"{init}: mean gain {s['mean_gain']:+.4f}; scratch's final reached with <= 50% of its "
                         f"compute on {s['plans_reaching_scratch_at_half_compute']}/{s['plans']} plans")
    _console().print(f"best preserving init: {result['best_preserving_init']} (default: {result['default_init']})")
    return 0


def cmd_bench_overhead(args: argparse.Namespace) -> int:
    from growsearch.bench.overhead import run_overhead_benchmark
    from growsearch.checkpoint import write_json

    with _console().status("running the same trials in-process and through Ray Tune"):
        result = run_overhead_benchmark(epochs=args.epochs, out_dir=args.workdir, short_epochs=args.short_epochs,
                                        scheduler_epochs=args.scheduler_epochs)
    result["command"] = "growsearch bench overhead " + " ".join(sys.argv[3:])
    write_json(args.out, result)
    short, sched = result["short_epochs"], result["scheduler"]
    _console().print(f"Ray start-up {result['ray_startup_seconds']:.1f}s; per-trial overhead "
                     f"{result['overhead_per_trial_seconds']:.2f}s ({result['overhead_percent_of_trial']:.1f}% of "
                     f"{result['local']['mean_trial_seconds']:.1f}s trials in-process); short epochs "
                     f"({short['mean_epoch_seconds'] * 1000:.0f} ms): {short['overhead_percent_of_trial']:.1f}%; "
                     f"idle slot time: synchronous {sched['successive_halving']['idle_percent_of_slot_time']:.1f}%, "
                     f"ASHA {sched['asha']['idle_percent_of_slot_time']:.1f}%; peak Ray RSS "
                     f"{result['ray_peak_rss_mb']:.0f} MB")
    return 0


def cmd_bench_faults(args: argparse.Namespace) -> int:
    from growsearch.bench.faults import run_fault_benchmark, select_scenarios
    from growsearch.checkpoint import write_json

    wanted = select_scenarios(args.scenario, ray=not args.no_ray, extended=not args.basic)  # bad names: exit 2
    progress, task = _progress_bar("fault scenarios")
    progress.update(task, total=len(wanted))
    with progress:
        result = run_fault_benchmark(args.workdir, ray=not args.no_ray, extended=not args.basic,
                                     scenarios=args.scenario,
                                     progress=lambda d, name: progress.update(task, completed=d, last=name))
    result["command"] = "growsearch bench faults " + " ".join(sys.argv[3:])
    write_json(args.out, result)
    for s in result["scenarios"]:
        _console().print(f"{s['scenario']}: injected={s['injected']} survived={s['survived']} lost={s['lost']} "
                         f"duplicates={s['duplicates']}" + (f" identical={s['identical']}" if "identical" in s else ""))
    ok = result["all_injected"] and result["all_survived"] and result["total_lost"] == 0 \
        and result["total_duplicates"] == 0 and all(s.get("identical", True) for s in result["scenarios"])
    return 0 if ok else 1


def cmd_bench_scale(args: argparse.Namespace) -> int:
    from growsearch.bench.scale import run_scale_benchmark
    from growsearch.checkpoint import write_json

    runs = []
    for text in args.runs:
        size, _, concurrent = text.partition("x")
        if not (size.isdigit() and concurrent.isdigit() and int(size) > 0 and int(concurrent) > 0):
            raise ConfigError(f"--runs: got {text!r}; allowed: CANDIDATESxCONCURRENT, e.g. 100x8")
        runs.append((int(size), int(concurrent)))
    result = run_scale_benchmark(runs=tuple(runs), workers=args.workers, cpus_per_node=args.cpus_per_node,
                                 memory_budget_gb=args.memory_budget_gb,
                                 server_size=args.server_size or None, faults=not args.no_faults,
                                 gpu=not args.no_gpu, workdir=args.workdir,
                                 progress=lambda msg: _console().print(msg, markup=False, highlight=False),
                                 partial=lambda r: write_json(args.out, {**r, "partial": True}))
    result["command"] = "growsearch bench scale " + " ".join(sys.argv[3:])
    write_json(args.out, result)
    for run in result["runs"]:
        _console().print(f"{run['candidates']} candidates x {run['concurrent_trials']} concurrent ({run['tracking']}): "
                         f"{run['candidates_per_min_orchestration']:.0f}/min orchestration, driver "
                         f"{run['driver_cpu_ms_per_candidate']:.0f} ms CPU/candidate, peak "
                         f"{run['driver_peak_rss_mb']:.0f} MB, MLflow {run['mlflow_ms_per_child_run']:.0f} ms/child, "
                         f"lost {run['outcome']['lost']}, duplicated {run['outcome']['duplicated']}")
    return 0


def cmd_bench_search(args: argparse.Namespace) -> int:
    from growsearch.bench.search_efficiency import run_search_benchmark

    seeds = _checked_seeds(args.seeds)
    if args.max_params is not None and args.max_params < 1:
        raise ConfigError(f"--max-params: got {args.max_params}; allowed: a positive number of parameters")
    result = _run_pool_bench(args, "search efficiency",
                             lambda pool, progress: run_search_benchmark(pool, seeds=seeds,
                                                                         max_params=args.max_params,
                                                                         progress=progress))
    budget = result["budget"]
    for title, view in ((f"whole pool ({result['n_candidates']} candidates)", result),
                        (f"max_params {budget['max_params']} ({budget['n_candidates']} candidates, "
                         f"{budget['candidates_at_cap']} at the cap)", budget)):
        _console().print(f"[bold]{title}[/bold]")
        for name, st in view["strategies"].items():
            ratio = st["compute_to_target_vs_train_all"]
            regret = st["regret_at_budget"]
            _console().print(f"  {name}: to target "
                             f"{'never (some seed or draw)' if ratio is None else f'{ratio:.1%} of train-all'}"
                             f" (FLOPs, mean over seeds {result['seeds']}), regret at budget "
                             f"{'—' if regret is None else f'{regret:.4f}'}")
    return 0


def _earlier_result(path: str, flag: str, bench: str, key: str) -> dict[str, Any]:
    """An earlier results JSON of ``growsearch bench BENCH`` (``key`` must be in it), or one line."""
    from growsearch._validate import read_text

    allowed = f"allowed: a results file of growsearch bench {bench}"
    try:
        data = json.loads(read_text(path, flag, limit=64 << 20))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{flag}: {path} is not JSON ({exc.msg} at line {exc.lineno}); {allowed}") from None
    if not isinstance(data, dict) or not isinstance(data.get(key), (list, dict)):
        raise ConfigError(f"{flag}: {path} holds no {key}; {allowed}")
    return data


def cmd_bench_headline(args: argparse.Namespace) -> int:
    import math

    from growsearch.bench.headline import STRATEGIES, run_headline_benchmark

    seeds = _checked_seeds(args.seeds, distinct=True)
    if args.jobs < 1:
        raise ConfigError(f"--jobs: got {args.jobs}; allowed: a positive integer")
    budgets = tuple(args.budgets)
    if any(not math.isfinite(b) or b <= 0 for b in budgets) or len(set(budgets)) != len(budgets):
        raise ConfigError(f"--budgets: got {list(budgets)}; allowed: distinct positive numbers of full trainings "
                          "(none: the five strategies alone)")
    reuse = _earlier_result(args.reuse, "--reuse", "headline", "runs") if args.reuse else None
    result = _run_pool_bench(args, "headline", lambda pool, progress: run_headline_benchmark(
        pool, seeds=seeds, jobs=args.jobs, progress=progress, budgets=budgets, reuse=reuse))
    for name in STRATEGIES:
        at = result["at_budget"][name]
        ratio = result["ratio_to_scratch_largest_final"][name]
        _console().print(f"{name}: " + ", ".join(f"{float(b):.0%}: {'—' if v is None else f'{v:.4f}'}"
                                                 for b, v in at.items())
                         + f"; scratch-largest's final at {'never' if ratio is None else f'{ratio:.0%}'}")
    for arm, row in result.get("budgeted", {}).get("arms", {}).items():
        _console().print(f"{arm} (given each budget): " + ", ".join(
            f"{float(b):.0%}: {'—' if v is None else f'{v:.4f}'}" for b, v in row["at_own_budget"].items()))
    for goal, g in result["goals"].get("growsearch_budget", {}).items():
        _console().print(f"goal {goal} (growsearch_budget): {'met' if g['met'] else 'not met'}")
    return 0


def cmd_bench_table(args: argparse.Namespace) -> int:
    from growsearch.bench.table import render_all

    written = render_all(Path(args.results), Path(args.out))
    for path in written:
        _console().print(f"[green]wrote[/] {path}")
    return 0


# -- run / demo / report ----------------------------------------------------------------
class RichProgress:
    """Stage, candidates done/total, best so far and ETA, on stderr."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("[bold]{task.description:<12}"), BarColumn(), MofNCompleteColumn(),
                            TimeRemainingColumn(), TextColumn("{task.fields[last]}"), console=_console())
        self.task = None

    def __enter__(self) -> RichProgress:
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def stage(self, name: str, total: int) -> None:
        if self.task is not None:
            self.bar.update(self.task, visible=True)
        self.task = self.bar.add_task(name, total=total, last="")

    def advance(self, done: int, text: str = "") -> None:
        self.bar.update(self.task, completed=done, last=text)


def _print_leaderboard(out: Path, rows: int = 15) -> None:
    import pandas as pd
    from rich.table import Table

    df = pd.read_csv(out / "leaderboard.csv")
    table = Table(title=f"leaderboard ({out})")
    cols = ["candidate", "plan", "init", "params", "manifold_metric", "stage", "final_accuracy", "gain"]
    for col in cols:
        table.add_column(col, justify="right" if col not in ("candidate", "plan", "init", "stage") else "left")
    for _, row in df.head(rows).iterrows():
        cells = []
        for col in cols:
            v = row[col]
            if col == "params" and not pd.isna(v):
                v = int(v)
            cells.append("" if pd.isna(v) else f"{v:.4f}" if isinstance(v, float) else str(v))
        table.add_row(*cells)
    console = _console()
    console.print(table)
    if (out / "best" / "spec.json").exists():
        loaders = "transformers' from_pretrained" if (out / "best" / "config.json").exists() else "plain PyTorch"
        console.print(f"best grown model: {out / 'best'} (growsearch grow/score and {loaders} load it)")


def _run(cfg, out: Path, resume: bool, args: argparse.Namespace) -> int:
    from growsearch.search import run_search

    if getattr(args, "executor", None):
        cfg.executor.name = args.executor
    if getattr(args, "ray_address", None):
        cfg.executor.name, cfg.executor.address = "ray", args.ray_address
    if getattr(args, "tracking_uri", None):
        cfg.tracking.enabled, cfg.tracking.uri = True, args.tracking_uri

    with RichProgress() as progress:
        run_search(cfg, out, resume=resume, progress=progress)
    _print_leaderboard(out)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from growsearch.search import load_config

    cfg = load_config(args.config)
    out = Path(args.out or Path("runs") / (cfg.name or Path(args.config).stem))
    return _run(cfg, out, args.resume, args)


def cmd_demo(args: argparse.Namespace) -> int:
    from growsearch.search import DEMO_CONFIG, load_config

    cfg = load_config(DEMO_CONFIG)
    out = Path(args.out)
    resume = args.resume or (out / "config.yaml").exists()  # the demo continues where it stopped
    if resume and (out / "config.yaml").exists() and "budget" not in (read_yaml(out / "config.yaml", "results") or {}):
        raise ConfigError(f"demo: {out} holds the demo of an earlier growsearch (without a budget); delete it or "
                          "choose another --out")
    return _run(cfg, out, resume, args)


def cmd_sync(args: argparse.Namespace) -> int:
    from growsearch.tracking import sync

    result = sync(args.results)
    _console().print(f"synced {args.results}: {result['uploaded']} record stage(s) uploaded, "
                     f"{result['pending']} still pending")
    return 0 if result["pending"] == 0 else 1


def cmd_ui(args: argparse.Namespace) -> int:
    import shutil

    from growsearch.tracking import default_uri, ui_route

    results = Path(args.results)
    uri = args.tracking_uri or default_uri(results)
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).exists():
        raise ConfigError(f"ui: {results} has no MLflow store (mlflow.db); run a search there first")
    mlflow = shutil.which("mlflow")
    if mlflow is None:
        raise ConfigError("ui: the mlflow command is not on PATH; install growsearch's dependencies")
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # a viewer: no job runner
    cmd = [mlflow, "ui", "--backend-store-uri", uri, "--host", args.host, "--port", str(args.port),
           "--workers", "1"]
    console = _console()
    console.print(f"MLflow UI for {uri}\n  http://{args.host}:{args.port}/{ui_route(results, uri)}\n"
                  f"  (listening on {args.host} only; Ctrl-C stops it)", soft_wrap=True)
    return _serve_until_stopped(cmd, env, console)


def _serve_until_stopped(cmd: list[str], env: dict[str, str], console: Any) -> int:
    """Run a server (``mlflow ui`` and the uvicorn workers it spawns) in its own process
    group and stop that whole group when we are told to stop: Ctrl-C, SIGTERM (a process
    manager, ``docker stop``) or SIGHUP (a closed terminal). Stopping only the direct child
    would leave its workers listening on the port."""
    import signal
    import subprocess

    proc = subprocess.Popen(cmd, env=env, start_new_session=True)

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        return proc.wait()
    except KeyboardInterrupt:
        _stop_group(proc)
        console.print("MLflow UI stopped")
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if proc.poll() is None:  # any other way out (an exception): never leave the server behind
            _stop_group(proc)


def _stop_group(proc: Any) -> None:
    """SIGTERM the process group led by ``proc`` and wait until every member is gone;
    SIGKILL what is left after 15 s."""
    import signal
    import time

    for sig, grace in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            proc.poll()  # reap the leader: a zombie would keep the group alive
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
    proc.poll()


def cmd_report(args: argparse.Namespace) -> int:
    from growsearch.report import rerender

    rerender(args.results)
    _print_leaderboard(Path(args.results))
    return 0


# -- parser ---------------------------------------------------------------------------
def finite_float(text: str) -> float:
    """argparse type: a finite number (``nan``/``inf`` would slip past every range check)."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"got {text[:40]!r}; allowed: a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"got {text[:40]!r}; allowed: a finite number")
    return value


def _add_plan_args(p: argparse.ArgumentParser) -> None:
    from growsearch.grow import DEFAULT_INIT, INIT_INFO, INITS

    p.add_argument("checkpoint", metavar="BASE",
                   help="the base model: a growsearch checkpoint directory, or hf:PATH for a local "
                        "Hugging Face model directory (GPT-2, Llama/Mistral/Qwen2, BERT classifier)")
    p.add_argument("--dataset", metavar="DATA", default=None,
                   help="training data (default: the checkpoint's): a built-in name, .pt/.npz, an image "
                        "folder; for hf: bases a .txt file or folder, or a .jsonl/.csv file, tokenised "
                        "with the model's own tokenizer")
    p.add_argument("--width", type=finite_float, default=None,
                   help="multiply every hidden width by W (MLP layers, CNN stage channels, "
                        "transformer d_model/heads/MLP hidden); default 1")
    p.add_argument("--depth", type=int, default=None,
                   help="add D layers/blocks, spread evenly; default 0")
    p.add_argument("--plan", metavar="PLAN.yaml",
                   help="a YAML ExpansionPlan (keys: width, widths, depth, insert_at, d_model, "
                        "n_heads, mlp_hidden); --width/--depth override its values")
    p.add_argument("--init", choices=INITS, default=DEFAULT_INIT,
                   help="how new units and layers are initialised: "
                        + "; ".join(f"{i.name}: {i.summary}" for i in INIT_INFO.values()))
    p.add_argument("--seed", type=int, default=0, help="seed for unit duplication and fresh weights")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def _add_executor_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--executor", choices=("ray", "local"), default=None,
                   help="ray: trials run as Ray Tune trials (default; a local Ray instance on 127.0.0.1 is "
                        "started and stopped unless an address is given); local: in-process, sequential")
    p.add_argument("--ray-address", metavar="ADDR", default=None,
                   help="join an existing Ray cluster: 'auto' (on a cluster node, e.g. inside `ray job "
                        "submit`) or ray://HOST:PORT")
    p.add_argument("--tracking-uri", metavar="URI", default=None,
                   help="MLflow tracking server (e.g. http://mlflow:5000); default: a SQLite store "
                        "DIR/mlflow.db in the results folder")


def _bench_parser(bsub: Any, name: str, func: Any, help_text: str, description: str, pool: str | None = None,
                  default_pool: str | None = None) -> argparse.ArgumentParser:
    """A ``growsearch bench NAME`` parser with ``--out`` (and ``--pool``/``--quick``)."""
    p = bsub.add_parser(name, formatter_class=_Formatter, help=help_text, description=description)
    if pool is not None:
        p.add_argument("--pool", required=default_pool is None, default=default_pool, help=pool)
        p.add_argument("--quick", action="store_true", help="a small version of the pool, for tests")
    p.add_argument("--out", required=True, metavar="FILE.json", help="where to write the results")
    p.set_defaults(func=func)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="growsearch", formatter_class=_Formatter,
        description=(
            "growsearch finds out how to grow a small pretrained PyTorch model -- wider, deeper\n"
            "or both. It proposes expansions, scores each with a cheap loss-landscape surrogate\n"
            "(the manifold metric), prunes weak candidates before training, trains the promising\n"
            "ones and reports a leaderboard with the best grown model."),
        epilog="Run 'growsearch COMMAND --help' for the options of each command.")
    parser.add_argument("--debug", action="store_true",
                        help="show full tracebacks on errors and the libraries' INFO logs (MLflow)")
    parser.add_argument("--memory-limit", metavar="SIZE", default=None,
                        help="refuse models whose weights, gradients and optimizer state would need more "
                             "(e.g. 8GB; default: $GROWSEARCH_MEMORY_LIMIT, else half the physical memory)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "pretrain", formatter_class=_Formatter, help="build and pretrain a small base model",
        description=(
            "Build the default small model of a family for a dataset, train it with the\n"
            "dataset's default recipe and save a checkpoint (model.safetensors + spec.json +\n"
            "meta.json) to --out. Datasets are generated offline; nothing is downloaded.\n\n"
            "example:\n  growsearch pretrain --family mlp --dataset mnist1d --out runs/base"))
    p.add_argument("--family", choices=("mlp", "cnn", "gpt"), required=True, help="model family")
    p.add_argument("--dataset", default="",
                   help="mnist1d, digits, text, or a .pt/.npz file (default: mnist1d; text for gpt)")
    p.add_argument("--out", required=True, metavar="DIR", help="checkpoint directory to write")
    p.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    p.add_argument("--seed", type=int, default=0, help="seed for init and data order")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser(
        "grow", formatter_class=_Formatter, help="grow a checkpoint by a plan",
        description=(
            "Grow a model wider and/or deeper. With a function-preserving init (all but random)\n"
            "the grown model computes the same function as the base; the measured deviation on\n"
            "a probe batch of training data is reported as max_abs_output_diff.\n\n"
            "examples:\n"
            "  growsearch grow runs/base --width 2 --depth 1 --out runs/w2d1 --json\n"
            "  growsearch grow runs/base --plan plan.yaml --init random --out runs/r\n"
            "  growsearch grow hf:./my-gpt2 --width 2 --dataset corpus.txt --out runs/gpt2-w2"))
    _add_plan_args(p)
    p.add_argument("--out", metavar="DIR2", help="where to save the grown checkpoint")
    p.set_defaults(func=cmd_grow)

    p = sub.add_parser(
        "run", formatter_class=_Formatter, help="run a growth search from a config file",
        description=(
            "Run a growth search: Optuna proposes expansions from the search space, each is grown\n"
            "(function-preserving by default) and scored with the manifold metric, the promotion\n"
            "policy picks the candidates worth full training, successive halving stops weak trainings\n"
            "at rungs (decided once every candidate reached them; early_stopping.policy: asha for\n"
            "Ray's asynchronous rule), and the results folder receives leaderboard.csv/.md, plots/,\n"
            "best/ and the resolved config.\n"
            "Interrupt it at any time (Ctrl-C, kill -9): --resume continues without recomputing or\n"
            "duplicating a candidate.\n\n"
            "examples:\n  growsearch run examples/demo.yaml --out runs/demo\n"
            "  growsearch run examples/demo.yaml --out runs/demo --resume"))
    p.add_argument("config", metavar="CONFIG.yaml", help="experiment config (see examples/)")
    p.add_argument("--out", metavar="DIR", help="results folder (default: runs/<name>)")
    p.add_argument("--resume", action="store_true", help="continue the search already in --out")
    _add_executor_args(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "demo", formatter_class=_Formatter, help="the embedded default search (MNIST-1D MLP, a few minutes)",
        description=(
            "Pretrain (cached) a small MNIST-1D MLP and search search_spaces/mlp.yaml's expansions\n"
            "with a budget of 2 full trainings of the largest one (examples/demo.yaml): brackets of\n"
            "successive halving, candidates proposed by Optuna, the manifold metric and mutations\n"
            "of the best so far, every FLOP counted; print the leaderboard. CPU only, no server, no\n"
            "download. Running it again continues (or re-reports) the same search."))
    p.add_argument("--out", default="runs/demo", metavar="DIR", help="results folder")
    p.add_argument("--resume", action="store_true", help=argparse.SUPPRESS)
    _add_executor_args(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("report", formatter_class=_Formatter, help="re-render a results folder",
                       description="Re-render leaderboard.csv/.md, plots/ and best/ from a results\n"
                                   "folder's candidate records, without computing anything.")
    p.add_argument("results", metavar="DIR", help="results folder of a search")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "ui", formatter_class=_Formatter, help="open the MLflow UI on a search's runs",
        description=(
            "Start the MLflow UI for a results folder's tracking store (mlflow.db) on 127.0.0.1,\n"
            "print its URL, and stop cleanly on Ctrl-C. The experiment holds one parent run per\n"
            "search and one child run per candidate: select the children and 'Compare' to see\n"
            "manifold metric, parameters and final accuracy side by side.\n\n"
            "example:\n  growsearch ui runs/demo"))
    p.add_argument("results", metavar="DIR", nargs="?", default="runs/demo", help="results folder")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (others only if you ask)")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--tracking-uri", default=None, help="a tracking store other than DIR/mlflow.db")
    p.set_defaults(func=cmd_ui)

    p = sub.add_parser(
        "sync", formatter_class=_Formatter, help="upload to MLflow what a search could not log",
        description=(
            "When the tracking server was unreachable during a search, the results folder is\n"
            "still complete; this uploads every record the MLflow runs lack (idempotent)."))
    p.add_argument("results", metavar="DIR", help="results folder")
    p.set_defaults(func=cmd_sync)

    p = sub.add_parser(
        "score", formatter_class=_Formatter, help="score one expansion with the manifold metric",
        description=(
            "Grow a checkpoint by a plan and score the grown model, before any training, with\n"
            "the manifold metric: the log-size of the simplex of linearly connected low-loss\n"
            "points around it (see docs/metric.md). Reports its cost in forward+backward\n"
            "examples and seconds. --proxies all adds params, FLOPs, the zero-cost proxies and\n"
            "short training at equal cost.\n\n"
            "example:\n  growsearch score runs/base --width 2 --depth 1 --json --proxies all"))
    _add_plan_args(p)
    p.add_argument("--proxies", choices=("none", "all"), default="none",
                   help="also compute the baseline predictors")
    p.add_argument("--manifold", metavar="FILE.yaml",
                   help="manifold-metric hyperparameters (keys of ManifoldConfig)")
    p.set_defaults(func=cmd_score)

    bench = sub.add_parser("bench", formatter_class=_Formatter, help="run a benchmark, write JSON",
                           description="Benchmarks print measured numbers and write them as JSON.")
    bsub = bench.add_subparsers(dest="bench", metavar="BENCHMARK", required=True)
    p = _bench_parser(
        bsub, "predictors", cmd_bench_predictors, "rank correlation of predictors with gain",
        "Run a candidate pool: grow every candidate, compute every predictor, train every\n"
        "candidate with the pool's fixed recipe over 2 seeds, and report Kendall/Spearman\n"
        "of each predictor against the measured gain (with bootstrap intervals and within\n"
        "equal-parameter groups) and the metric's cost relative to full training.\n\n"
        "example:\n  growsearch bench predictors --pool mnist1d-mlp --out docs/results/mnist1d-mlp.json",
        pool="digits-mlp (tuning), mnist1d-mlp, mnist1d-cnn, text-gpt")
    p.add_argument("--jobs", type=int, default=1, help="candidates evaluated in parallel processes")
    p.add_argument("--manifold", metavar="FILE.yaml", help="override manifold-metric hyperparameters")
    p.add_argument("--rescore", metavar="FILE.json",
                   help="keep the trained scores of this earlier result of the same pool (version, recipe,\n"
                        "seeds) and compute only the predictors again (training is deterministic)")

    p = _bench_parser(
        bsub, "growth", cmd_bench_growth, "growing vs. training the same model from scratch",
        "Which init, and is growing worth it? For every plan of a pool: train the target\n"
        "architecture from scratch and grow the pretrained base into it with random init and\n"
        "every function-preserving init, all with the pool's recipe over --seeds. Reports per\n"
        "plan and init the final score (mean, std, per seed), the training FLOPs needed to reach\n"
        "scratch's final score (and the ratio to scratch's), the paired-seed difference against\n"
        "random with a 95% interval and the symmetry probe after training (docs/growth.md).\n"
        "Scores are test scores; the best init is chosen by validation gain.\n\n"
        "example (every plan, as docs/results holds them):\n"
        "  growsearch bench growth --pool mnist1d-cnn --all-plans --out docs/results/growth-mnist1d-cnn.json",
        pool="a pool name (see bench predictors)")
    p.add_argument("--seeds", type=int, nargs="+", default=None, metavar="SEED",
                   help="training (and growth) seeds, the same for every arm so that differences are paired; "
                        "more seeds narrow the 95%% intervals (default: 0 1 2)")
    p.add_argument("--all-plans", action="store_true",
                   help="every plan of the pool with its full recipe (default: a subset of the plans, "
                        "fewer epochs for CNN and GPT -- bench.growth.GROWTH_SETTINGS -- to fit in minutes "
                        "on 2 CPU cores)")

    p = _bench_parser(
        bsub, "search", cmd_bench_search, "compute to find a good candidate, per strategy",
        "Train every candidate of a pool once per seed (recording per-epoch validation and test\n"
        "curves), then replay the strategies on the same curves: train-all, random order\n"
        "(expected compute over random orders, exact), early stopping only (ASHA on validation\n"
        "scores), random pruning + ASHA, and surrogate pruning + ASHA for each of manifold\n"
        "(growsearch), params, naswot and short_training. Reports the training FLOPs\n"
        "(forward+backward = 3x forward) to complete a candidate within 0.5 test-accuracy points\n"
        "of the best, and the regret at 25% of train-all's budget of the candidate each strategy\n"
        "would pick by validation score: mean over seeds with [min, max]. Every strategy is\n"
        "replayed on the whole pool and under a parameter budget that binds (--max-params), where\n"
        "several different expansions of about the same size sit at the cap.\n\n"
        "example:\n  growsearch bench search --pool mnist1d-mlp --out docs/results/search-mnist1d-mlp.json",
        pool="a pool name (see bench predictors)", default_pool="mnist1d-mlp")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], metavar="SEED",
                   help="growth, metric and training seeds; figures are means over them with their spread")
    p.add_argument("--max-params", type=int, default=None, metavar="N",
                   help="the parameter budget of the second replay; default: the upper edge of the pool's "
                        "second-largest equal-parameter group, so that a group of different expansions sits "
                        "at the cap")

    p = _bench_parser(
        bsub, "headline", cmd_bench_headline, "growsearch vs. what a user would do instead, at equal compute",
        "The headline benchmark. Five strategies under the same constraint (the family's bundled\n"
        "search space) and recipe (the pool's), each over --seeds: scratch_largest (train the\n"
        "largest allowed architecture from scratch), scratch_search (Optuna TPE + ASHA over the\n"
        "same architectures from scratch), grow_largest (grow the base into the largest, train),\n"
        "growsearch (the product as shipped) and growsearch_random_pruning (no surrogate). Writes\n"
        "anytime curves -- test score of the best model by validation score vs. training FLOPs,\n"
        "every stage counted -- per seed, and the means at 25/50/100% of scratch_largest's full\n"
        "training, with the base's pretraining as a sunk cost and counted in. Then growsearch\n"
        "given each of --budgets (budget: {full_trainings: B}; one run per budget and seed), with\n"
        "the surrogate: params and no-surrogate ablations, scored at its own budget. Render the\n"
        "figure and tables with `growsearch bench table`.\n\n"
        "example:\n  growsearch bench headline --pool mnist1d-mlp --out docs/results/headline-mnist1d-mlp.json",
        pool="a pool name (see bench predictors)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], metavar="SEED",
                   help="one run of every strategy per seed (init, data order, growth, sampler)")
    p.add_argument("--jobs", type=int, default=1, help="seeds run in parallel processes")
    p.add_argument("--budgets", type=float, nargs="*", default=[0.25, 0.5, 1.0, 2.0], metavar="B",
                   help="growsearch given each budget (budget: {full_trainings: B}, one run per budget and seed, "
                        "with the surrogate: params and no-surrogate ablations); give none for the five "
                        "strategies alone")
    p.add_argument("--reuse", metavar="FILE.json",
                   help="take the five strategies' runs from an earlier result of the same pool, version, recipe "
                        "and seeds (they are deterministic) and run the budgeted arms alone")

    p = bsub.add_parser(
        "table", formatter_class=_Formatter, help="render benchmark JSON as docs (tables, headline figure)",
        description=(
            "Render every benchmark JSON of a folder as the markdown of docs/benchmarks.md, and\n"
            "each headline result as a figure docs/headline-POOL.png beside it. Numbers are\n"
            "copied as measured.\n\n"
            "example:\n  growsearch bench table --results docs/results --out docs/benchmarks.md"))
    p.add_argument("--results", default="docs/results", metavar="DIR", help="folder of benchmark JSON files")
    p.add_argument("--out", default="docs/benchmarks.md", metavar="FILE.md",
                   help="markdown to write; figures go to the same folder")
    p.set_defaults(func=cmd_bench_table)

    p = _bench_parser(
        bsub, "overhead", cmd_bench_overhead, "Ray Tune orchestration overhead vs. in-process",
        "Run the same training trials (one at a time) through the in-process executor and the\n"
        "Ray Tune executor -- ~10 s CNN trials and short-epoch MLP trials; report per-trial\n"
        "orchestration overhead (seconds and % of trial time), the idle slot time of synchronous\n"
        "successive halving against ASHA (2 concurrent trials), Ray start-up time and the peak\n"
        "memory of Ray's processes.")
    p.add_argument("--epochs", type=int, default=40, help="epochs per trial (40 CNN epochs: ~10 s on one core)")
    p.add_argument("--short-epochs", type=int, default=150,
                   help="epochs per short-epoch MLP trial (~35 ms epochs)")
    p.add_argument("--scheduler-epochs", type=int, default=8,
                   help="epochs per trial in the synchronous-vs-ASHA idle-time comparison")
    p.add_argument("--workdir", default="runs/bench-overhead", help="where trial checkpoints go")

    p = _bench_parser(
        bsub, "faults", cmd_bench_faults, "inject real faults, check nothing is lost",
        "Run a small search under real faults -- SIGKILL, SIGINT (Ctrl-C) and SIGTERM of the\n"
        "search during screening, promotion, full training and leaderboard writing (then\n"
        "--resume; signals also inside Ray trials), a torn journal line, a full disk while\n"
        "saving, two processes on one folder, kill -9 with Ray trials in flight, a candidate\n"
        "that raises, one whose training diverges to NaN, a Ray worker killed mid-trial -- and\n"
        "report for each: injected, survived, results lost (must be 0), duplicates in the\n"
        "leaderboard and MLflow (must be 0), identical to an uninterrupted run. Exits 1 unless\n"
        "every scenario was injected and survived with nothing lost or duplicated.")
    p.add_argument("--workdir", default=None, help="where the runs go (default: a temp dir)")
    p.add_argument("--no-ray", action="store_true", help="skip the scenarios that run Ray")
    p.add_argument("--basic", action="store_true",
                   help="only the SIGKILL and candidate-failure scenarios (about a third of the time)")
    p.add_argument("--scenario", action="append", metavar="NAME",
                   help="only the scenarios whose names contain NAME (case-insensitive; repeatable), e.g. "
                        "'SIGINT during screening (ray)' or 'disk full'; the uninterrupted reference always runs")

    p = _bench_parser(
        bsub, "scale", cmd_bench_scale, "hundreds of candidates on a multi-node Ray cluster, measured",
        "Start a Ray cluster on 127.0.0.1 (a head and worker nodes with `ray start`, each declaring\n"
        "many logical CPUs and a fake accelerator), submit tiny searches with `ray job submit`\n"
        "(100 to 1,000 candidates, several concurrencies) and measure orchestration throughput,\n"
        "driver CPU and memory per candidate, journal and MLflow sizes, MLflow time per child run\n"
        "(SQLite and a real mlflow server) and time to the first screened candidate; then kill a\n"
        "worker node and the driver (resubmitted with --resume) and pack fractional GPU trials.\n"
        "Concurrencies whose trial processes do not fit in --memory-budget-gb are skipped, with\n"
        "the numbers. Every process started is stopped by its PID; `ray stop` is never called.\n\n"
        "example:\n  growsearch bench scale --out docs/results/scale.json")
    p.add_argument("--runs", nargs="+", default=["100x8", "100x16", "300x16", "1000x16", "100x32", "100x64"],
                   metavar="NxC", help="runs of N candidates with C concurrent trials, in order")
    p.add_argument("--workers", type=int, default=2, help="worker nodes beside the head")
    p.add_argument("--cpus-per-node", type=int, default=32, help="logical CPUs each worker node declares")
    p.add_argument("--memory-budget-gb", type=float, default=8.0,
                   help="the most memory the cluster's processes may take (trial processes are measured)")
    p.add_argument("--server-size", type=int, default=100, help="candidates of the mlflow-server run (0: none)")
    p.add_argument("--no-faults", action="store_true", help="skip the node-loss and driver-loss runs")
    p.add_argument("--no-gpu", action="store_true", help="skip the fractional-GPU packing run")
    p.add_argument("--workdir", default=None, help="where the runs go (default: a temp dir)")
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an interruption so that a search stops exactly as on Ctrl-C."""


_signals: list[int] = []  # signals received: libraries may re-raise a plain KeyboardInterrupt


def _on_signal(signum: int, frame: Any) -> None:
    import signal

    _signals.append(signum)
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


EXIT_SIGINT, EXIT_SIGTERM = 130, 143  # 128 + the signal number, as a shell reports a killed process


def main(argv: list[str] | None = None) -> int:
    import signal
    import threading

    _signals.clear()
    main_thread = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)} if main_thread else {}
    try:
        if main_thread:
            signal.signal(signal.SIGTERM, _on_signal)
            if previous[signal.SIGINT] is signal.default_int_handler:  # not when started with SIGINT ignored
                signal.signal(signal.SIGINT, _on_signal)
        return _main(argv)
    finally:
        # Called from Python with arguments (a notebook, a test), the caller's handlers come
        # back: a SIGINT left ignored would be inherited by every process the caller starts
        # later, and Ctrl-C would never reach them. Run as the program (argv None), an
        # interrupted run keeps ignoring a second Ctrl-C until the interpreter has exited.
        if argv is not None:
            for sig, handler in previous.items():
                signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2): a return code, not an exception
        return int(exc.code or 0)
    if args.debug:
        os.environ["GROWSEARCH_DEBUG"] = "1"
    try:
        try:
            if args.memory_limit is not None:
                from growsearch.models.memory import ENV, parse_size

                os.environ[ENV] = str(parse_size(args.memory_limit, "--memory-limit"))
            return int(args.func(args) or 0)
        except Exception:
            if _signals:  # an interruption that a library's cleanup turned into another error
                raise KeyboardInterrupt from None
            raise
    except GrowsearchError as exc:
        if args.debug:
            raise
        print(f"growsearch: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except IncompleteSearchError as exc:
        if args.debug:
            raise
        print(f"growsearch: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # the environment (a full disk, a vanished folder), not the user's input
        if args.debug:
            raise
        print(f"growsearch: error: {exc}; fix it and run the same command again (a search continues with "
              "--resume)", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        import signal

        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the exit short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        terminated = isinstance(exc, Terminated) or signal.SIGTERM in _signals
        which = "SIGTERM" if terminated else "SIGINT"
        again = " (nothing was decided on partial results; the same command with --resume continues)" \
            if args.command in ("run", "demo") else ""
        print(f"growsearch: interrupted by {which}{again}", file=sys.stderr)
        return EXIT_SIGTERM if terminated else EXIT_SIGINT

if __name__ == "__main__":
    sys.exit(main())
