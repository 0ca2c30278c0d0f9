"""The experiment config: one validated YAML file describes a whole search.

Unknown keys and wrong types are refused with their key path (``promotion.k: got 'x';
allowed: int``). See examples/demo.yaml for an annotated file.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from growsearch._validate import from_dict, read_yaml
from growsearch.errors import ConfigError
from growsearch.metrics import ManifoldConfig
from growsearch.search.surrogate import surrogate_names
from growsearch.train import TrainRecipe


@dataclass
class PretrainSpec:
    """Build and cache a base model instead of loading a checkpoint."""

    family: Literal["mlp", "cnn", "gpt"]
    dataset: str = ""
    epochs: int | None = None
    seed: int = 0


@dataclass
class BaseSpec:
    """Where the base model comes from: exactly one of a growsearch checkpoint directory, a
    model to pretrain here, ``hf``, a local Hugging Face model directory, or ``timm`` /
    ``torchvision``: a model name with its ``weights`` file (safetensors or a state dict), its
    constructor ``kwargs`` and the ``input_size`` [C, H, W] it takes (or a folder that growsearch
    saved a grown vision model in: weights and timm.json/torchvision.json)."""

    checkpoint: str | None = None
    pretrain: PretrainSpec | None = None
    hf: str | None = None
    timm: str | None = None
    torchvision: str | None = None
    weights: str | None = None
    kwargs: dict[str, Any] | None = None
    input_size: list[int] | None = None

    def source(self) -> str | None:
        """The base as ``load_base_model`` takes it (None for a pretrain base)."""
        if self.hf is not None:
            return f"hf:{self.hf}"
        for library in ("timm", "torchvision"):
            name = getattr(self, library)
            if name is not None and self.weights is None:
                return f"{library}:{name}"  # a saved folder
            if name is not None:  # absolute: Ray workers run in other directories
                return f"{library}:" + json.dumps({"name": name, "weights": str(Path(self.weights).resolve()),
                                                   "kwargs": self.kwargs or {}, "input_size": self.input_size},
                                                  sort_keys=True)
        return self.checkpoint

    def name(self) -> str | None:
        """What the base is called (a folder or model name; None for a pretrain base)."""
        return self.hf or self.checkpoint or self.timm or self.torchvision


@dataclass
class SamplerSpec:
    name: Literal["tpe", "random", "nsga2"] = "tpe"
    seed: int = 0


@dataclass
class PromotionSpec:
    policy: Literal["top_k", "top_fraction", "pareto"] = "top_k"
    k: int = 3
    fraction: float = 0.25
    cost: Literal["params", "flops"] = "params"  # the cost axis of the pareto policy


@dataclass
class EarlyStoppingSpec:
    """Early stopping of the promoted candidates' training (see search/schedulers.py):
    ``successive_halving`` decides each rung once every candidate reached it (reproducible
    under any concurrency and after a resume); ``asha`` decides as results arrive (Ray's
    rule, for throughput on clusters); ``none`` trains every promoted candidate fully."""

    policy: Literal["successive_halving", "asha", "none"] = "successive_halving"
    grace_epochs: int = 2
    reduction_factor: int = 3


@dataclass
class ExecutorSpec:
    name: Literal["ray", "local"] = "ray"  # ray: Ray Tune (local instance unless address); local: in-process
    address: str | None = None  # ray: None starts a local instance; "auto" or "ray://host:port"
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent_trials: int = 2
    max_failures: int = 1
    storage_path: str | None = None
    resource_timeout_s: float = 0.0  # cluster: wait this long for an autoscaler to add a node a trial fits on
    device: str = "auto"  # local executor: auto (CUDA when present), cpu, cuda, cuda:1, ...


@dataclass
class TrackingSpec:
    enabled: bool = True
    uri: str | None = None  # default: sqlite:///<results>/mlflow.db
    experiment: str | None = None


@dataclass
class BudgetSpec:
    """The total training compute a search may spend (``budget:``; see search/budget.py).

    Give exactly one of ``flops`` (training FLOPs: forward + backward = 3 x forward, per
    example) or ``full_trainings`` (a multiple of one full training -- the config's
    ``training`` recipe -- of the largest candidate the search space allows). Everything
    the search spends counts: screening, every epoch of every training (stopped ones
    included) and the base's reference run. With a budget the search is multi-fidelity
    from its first candidate (rung 0: the surrogate's screen; rung 1: ``grace_epochs`` of
    training; later rungs x ``reduction_factor``), ``candidates:`` is an optional cap on
    the candidates screened (none by default: the budget decides), and the reference run
    (off unless ``reference: true``) trains after the candidates, its cost reserved from the start.
    ``screen_batch``: how many uniform proposals the surrogate screens for each proposal it
    makes (the best goes on). ``surrogate: none`` takes the surrogate out: no screening
    rung, no surrogate source (cost-aware Hyperband with the sampler and the incumbent)."""

    flops: float | None = None
    full_trainings: float | None = None
    screen_batch: int = 3


@dataclass
class SearchConfig:
    base: BaseSpec
    space: str
    name: str = ""
    dataset: str = ""  # default: the base model's dataset
    # without a budget: how many candidates to screen (default 12); with a budget: an
    # optional cap on the candidates screened (default: none, the budget decides)
    candidates: int | None = None
    objectives: list[str] = field(default_factory=lambda: ["manifold_metric"])
    # what promotion ranks by: manifold, params, naswot, snip, short_training, or a list (rank_mean);
    # with a budget also "none" (no screening, no surrogate source: plain cost-aware Hyperband)
    surrogate: str | list[str] = "manifold"
    sampler: SamplerSpec = field(default_factory=SamplerSpec)
    promotion: PromotionSpec = field(default_factory=PromotionSpec)
    training: TrainRecipe = field(default_factory=lambda: TrainRecipe(epochs=10, lr=2e-3))
    early_stopping: EarlyStoppingSpec = field(default_factory=EarlyStoppingSpec)
    # also train the base for the same budget, as the "gain" reference ("none" = false);
    # default: true without a budget; with one, false (it buys no better model) -- true
    # trains it after the candidates, counted in what is spent
    reference: bool | Literal["none"] | None = None
    seed: int = 0
    manifold: ManifoldConfig = field(default_factory=ManifoldConfig)
    executor: ExecutorSpec = field(default_factory=ExecutorSpec)
    tracking: TrackingSpec = field(default_factory=TrackingSpec)
    storage: str | None = None  # Optuna storage URL; default: a journal file in the results folder
    budget: BudgetSpec | None = None  # None: the search without a budget (screen, promote, train)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if data["budget"] is None:  # a search without a budget saves the config it always saved
            del data["budget"]
        return data


MAX_SEED = 2 ** 32 - 1
MAX_CANDIDATES = 100_000
DEFAULT_CANDIDATES = 12  # without a budget

OBJECTIVES = {"manifold_metric": "maximize", "manifold_per_param": "maximize",
              "params": "minimize", "flops": "minimize"}


def objective_values(record: dict[str, Any], objectives: list[str]) -> list[float]:
    """A candidate's objective values for the study; rejected and failed candidates (and
    a -inf volume) get the worst value in each direction."""
    out = []
    for name in objectives:
        v = record.get(name)
        worst = -1e9 if OBJECTIVES[name] == "maximize" else 1e18
        out.append(float(v) if isinstance(v, (int, float)) and math.isfinite(v) else worst)
    return out


def validate(cfg: SearchConfig) -> SearchConfig:
    """Cross-field checks that a type check cannot make."""
    if sum(x is not None for x in (cfg.base.checkpoint, cfg.base.pretrain, cfg.base.hf, cfg.base.timm,
                                   cfg.base.torchvision)) != 1:
        raise ConfigError("base: give exactly one of checkpoint, pretrain or hf (or timm / torchvision: "
                          "a vision model)")
    if cfg.base.timm is None and cfg.base.torchvision is None and (cfg.base.weights or cfg.base.kwargs
                                                                   or cfg.base.input_size):
        raise ConfigError("base.weights: weights, kwargs and input_size go with a timm or torchvision base")
    if cfg.surrogate == "none":
        if cfg.budget is None:
            raise ConfigError("surrogate: got 'none'; without a budget the search promotes by its surrogate: "
                              "allowed: manifold, params, naswot, snip, short_training (or add budget:)")
    else:
        surrogate_names(cfg.surrogate)
    if cfg.reference == "none":
        cfg.reference = False
    if cfg.budget is not None:
        _validate_budget(cfg)  # candidates and reference left out stay None (saved so): no cap, no reference
    else:
        cfg.candidates = DEFAULT_CANDIDATES if cfg.candidates is None else cfg.candidates
        cfg.reference = True if cfg.reference is None else cfg.reference
    if cfg.candidates is None:
        pass  # a budget with no cap
    elif cfg.candidates < 1:
        raise ConfigError(f"candidates: got {cfg.candidates}; allowed: a positive integer")
    elif cfg.candidates > MAX_CANDIDATES:
        raise ConfigError(f"candidates: got {cfg.candidates}; allowed: at most {MAX_CANDIDATES}")
    # numpy seeds are 0..2**32-1; each ask's sampler seed mixes sampler.seed with the ask's
    # number (engine.ask_seed), but folders of older searches resume with seed + number: the
    # headroom below keeps that sum in range
    seeds = (("seed", cfg.seed, MAX_SEED), ("sampler.seed", cfg.sampler.seed, MAX_SEED - (cfg.candidates or 0)),
             ("manifold.seed", cfg.manifold.seed, MAX_SEED),
             ("base.pretrain.seed", cfg.base.pretrain.seed if cfg.base.pretrain else 0, MAX_SEED))
    for where, seed, top in seeds:
        if not 0 <= seed <= top:
            raise ConfigError(f"{where}: got {seed}; allowed: 0..{top}")
    if cfg.base.pretrain is not None:
        pre = cfg.base.pretrain
        if pre.epochs is not None and pre.epochs < 1:
            raise ConfigError(f"base.pretrain.epochs: got {pre.epochs}; allowed: a positive integer "
                              "(or leave it out for the dataset's recipe)")
        if pre.dataset and cfg.dataset and pre.dataset != cfg.dataset:
            raise ConfigError(f"dataset: got {cfg.dataset!r} but base.pretrain.dataset is {pre.dataset!r}; "
                              "allowed: the same dataset, or give it in one place")
    if not cfg.objectives or cfg.objectives[0] not in ("manifold_metric", "manifold_per_param"):
        raise ConfigError(f"objectives: got {cfg.objectives}; the first must be manifold_metric or "
                          "manifold_per_param (the surrogate)")
    for i, name in enumerate(cfg.objectives):
        if name not in OBJECTIVES:
            raise ConfigError(f"objectives[{i}]: got {name!r}; allowed: {', '.join(OBJECTIVES)}")
    if cfg.sampler.name == "nsga2" and len(cfg.objectives) < 2:
        raise ConfigError("sampler.name: nsga2 needs two objectives, e.g. [manifold_metric, params]")
    p = cfg.promotion
    if p.policy == "top_k" and cfg.budget is None and not 1 <= p.k <= cfg.candidates:
        raise ConfigError(f"promotion.k: got {p.k}; allowed: 1..{cfg.candidates} (the number of candidates)")
    if p.policy == "top_fraction" and not 0 < p.fraction <= 1:
        raise ConfigError(f"promotion.fraction: got {p.fraction}; allowed: in (0, 1]")
    es = cfg.early_stopping
    if es.grace_epochs < 1 or es.reduction_factor < 2:
        raise ConfigError(f"early_stopping: grace_epochs {es.grace_epochs} must be >= 1 and "
                          f"reduction_factor {es.reduction_factor} >= 2")
    ex = cfg.executor
    if ex.cpus_per_trial <= 0 or ex.gpus_per_trial < 0 or ex.max_concurrent_trials < 1 or ex.max_failures < 0 \
            or ex.resource_timeout_s < 0:
        raise ConfigError("executor: cpus_per_trial must be > 0, gpus_per_trial >= 0, "
                          "max_concurrent_trials >= 1, max_failures >= 0, resource_timeout_s >= 0")
    return cfg


def _validate_budget(cfg: SearchConfig) -> None:
    b = cfg.budget
    given = [k for k in ("flops", "full_trainings") if getattr(b, k) is not None]
    if len(given) != 1:
        raise ConfigError(f"budget: got {', '.join(given) or 'neither'}; allowed: exactly one of flops (e.g. "
                          "{flops: 3.0e12}) or full_trainings (e.g. {full_trainings: 1.0})")
    value = getattr(b, given[0])
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"budget.{given[0]}: got {value}; allowed: a positive finite number")
    if cfg.training.steps is not None:
        raise ConfigError(f"training.steps: got {cfg.training.steps}; with a budget the rungs are epochs: give "
                          "training.epochs instead")
    if b.screen_batch < 1:
        raise ConfigError(f"budget.screen_batch: got {b.screen_batch}; allowed: a positive integer")
    if len(cfg.objectives) > 1:
        raise ConfigError(f"objectives: got {cfg.objectives}; with a budget the sampler learns the observed "
                          "validation score (one objective); remove budget: for a multi-objective search")
    if cfg.early_stopping.policy != "successive_halving":
        raise ConfigError(f"early_stopping.policy: got {cfg.early_stopping.policy!r}; with a budget the search "
                          "halves synchronously (successive_halving); asha and none apply without budget:")


def resolve_paths(cfg: SearchConfig, folder: Path) -> SearchConfig:
    """Relative file paths of a config file are relative to that file's folder, not to the
    working directory. A bare bundled name (``space: mlp.yaml``) is the bundled space; write
    ``./mlp.yaml`` for a file of that name beside the config."""
    from growsearch.search.space import BUNDLED

    def near(value: str | None) -> str | None:
        if not value or Path(value).is_absolute() or "://" in value:
            return value
        return str(folder / value)

    if not (Path(cfg.space).name == cfg.space and (BUNDLED / cfg.space).exists()):
        cfg.space = near(cfg.space) or cfg.space  # a bare bundled name (mlp.yaml) stays the bundled space
    cfg.base.checkpoint = near(cfg.base.checkpoint)
    cfg.base.weights = near(cfg.base.weights)
    for library in ("timm", "torchvision"):  # a saved folder beside the config (a model name stays a name)
        value = getattr(cfg.base, library)
        if value and (folder / value).is_dir():
            setattr(cfg.base, library, near(value))
    if (cfg.dataset and cfg.dataset.endswith((".pt", ".npz"))) or (cfg.dataset and (folder / cfg.dataset).is_dir()):
        cfg.dataset = near(cfg.dataset) or cfg.dataset
    if cfg.base.pretrain is not None and cfg.base.pretrain.dataset.endswith((".pt", ".npz")):
        cfg.base.pretrain.dataset = near(cfg.base.pretrain.dataset) or cfg.base.pretrain.dataset
    cfg.executor.storage_path = near(cfg.executor.storage_path) if cfg.executor.storage_path else None
    return cfg


def load_config(source: str | Path | dict[str, Any]) -> SearchConfig:
    """Read and validate an experiment config (a YAML path or a dict). Relative paths in a
    file are resolved against the file's folder."""
    if isinstance(source, dict):
        data = source
    else:
        data = read_yaml(source, "config")
    if not isinstance(data, dict):
        raise ConfigError(f"config: got {type(data).__name__}; allowed: a mapping of settings")
    cfg = validate(from_dict(SearchConfig, data, "config"))
    return cfg if isinstance(source, dict) else resolve_paths(cfg, Path(source).resolve().parent)
