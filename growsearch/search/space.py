"""Search spaces: which expansions may be proposed, as YAML compiled to Optuna.

A space file names the model ``family``, its ``knobs`` and optional ``constraints``::

    family: mlp
    knobs:
      kind: {choices: [width, depth, mixed]}     # which kind of growth
      width: {low: 1.25, high: 4.0, step: 0.25}  # one multiplier on every hidden width
      layer_width: {low: 1.0, high: 3.0}         # or: one multiplier per layer / stage
      depth: {low: 1, high: 4}                   # layers / blocks to add, spread evenly
      d_model: {choices: [1, 2]}                 # gpt, hf: residual width multiplier
      n_heads: {low: 0, high: 4}                 # gpt, hf: heads to add per block
      mlp_hidden: {choices: [1.0, 2.0]}          # gpt, hf: MLP size multiplier
      init: {choices: [zero_out, random, masked]}  # growsearch.grow.INITS
    constraints: {max_params: 100000, max_flops: 5000000, max_width: 4.0}

A knob is ``{choices: [...]}`` (categorical) or ``{low, high[, step][, log]}`` (int when
both bounds are integers, else float). ``kind`` decides which knobs a trial uses: width
knobs for ``width``, ``depth`` for ``depth``, both for ``mixed`` (conditional parameters,
define-by-run). Candidates that break a constraint are rejected before any compute.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import torch

from growsearch._validate import read_yaml, show
from growsearch.errors import ConfigError, GrowsearchError
from growsearch.grow import DEFAULT_INIT, INITS, ExpansionPlan
from growsearch.grow.plan import resolve
from growsearch.models import FAMILIES, ModelConfig, count_params
from growsearch.models.memory import check_memory

BUNDLED = Path(__file__).resolve().parent.parent / "search_spaces"
WIDTH_KNOBS = {"mlp": ("width", "layer_width"), "cnn": ("width", "layer_width"),
               "gpt": ("width", "d_model", "n_heads", "mlp_hidden"),
               "hf": ("width", "d_model", "n_heads", "mlp_hidden"),
               "vision": ("width", "layer_width", "d_model", "n_heads", "mlp_hidden")}  # ResNet / ViT knobs
TRANSFORMERS = ("gpt", "hf")  # families with d_model / n_heads / mlp_hidden knobs
KNOBS = ("kind", "width", "layer_width", "depth", "d_model", "n_heads", "mlp_hidden", "init")
CONSTRAINTS = ("max_params", "max_flops", "max_width")
KINDS = ("width", "depth", "mixed")


@dataclass
class Knob:
    """One dimension of the space, as an Optuna distribution."""

    name: str
    choices: list[Any] | None = None
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False

    def suggest(self, trial: optuna.Trial, name: str | None = None) -> Any:
        name = name or self.name
        if self.choices is not None:
            return trial.suggest_categorical(name, self.choices)
        if isinstance(self.low, int) and isinstance(self.high, int) and not isinstance(self.step, float):
            return trial.suggest_int(name, self.low, self.high, step=self.step or 1, log=self.log)
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)


@dataclass
class SearchSpace:
    family: str
    knobs: dict[str, Knob]
    constraints: dict[str, float] = field(default_factory=dict)
    source: str = "<dict>"
    path: str | None = None  # the file it was read from (None: a dict)

    def kinds(self) -> list[str]:
        knob = self.knobs.get("kind")
        if knob is not None:
            return list(knob.choices or [])
        has_width = any(k in self.knobs for k in WIDTH_KNOBS[self.family])
        has_depth = "depth" in self.knobs
        return ["mixed" if has_width and has_depth else "width" if has_width else "depth"]

    def suggest(self, trial: optuna.Trial, base: ModelConfig) -> tuple[ExpansionPlan, str]:
        """Ask ``trial`` for one expansion of ``base``: ``(plan, init)``."""
        kinds = self.kinds()
        kind = self.knobs["kind"].suggest(trial) if "kind" in self.knobs else kinds[0]
        plan = ExpansionPlan()
        if kind in ("width", "mixed"):
            if "width" in self.knobs:
                plan.width = float(self.knobs["width"].suggest(trial))
            if "layer_width" in self.knobs:
                widths = base.hidden if self.family == "mlp" else base.channels
                plan.widths = [max(w, round(w * self.knobs["layer_width"].suggest(trial, f"layer_width_{i}")))
                               for i, w in enumerate(widths)]
            if self.family in TRANSFORMERS or base.plan_fields():  # a ViT vision base too
                if "d_model" in self.knobs:
                    plan.d_model = round(base.d_model * self.knobs["d_model"].suggest(trial))
                if "n_heads" in self.knobs:
                    plan.n_heads = base.n_heads + self.knobs["n_heads"].suggest(trial)
                if "mlp_hidden" in self.knobs:
                    plan.mlp_hidden = round(base.mlp_hidden * self.knobs["mlp_hidden"].suggest(trial))
        if kind in ("depth", "mixed") and "depth" in self.knobs:
            plan.depth = self.knobs["depth"].suggest(trial)
        init = self.knobs["init"].suggest(trial) if "init" in self.knobs else DEFAULT_INIT
        return plan, init

    def violation(self, base: ModelConfig, plan: ExpansionPlan, example: torch.Tensor) -> str | None:
        """Why ``plan`` breaks a constraint (checked on the meta device: no weights,
        no compute), or None."""
        grown = planned_config(base, plan)
        if "max_width" in self.constraints:
            for old, new in zip(base.unit_groups(), grown.unit_groups(), strict=False):
                if new.size > old.size * self.constraints["max_width"] + 1e-9:
                    return f"width multiplier {new.size / old.size:.2f} > max_width {self.constraints['max_width']}"
        try:
            check_memory(grown, "plan")
        except GrowsearchError as exc:
            return str(exc)
        with torch.device("meta"):
            model = grown.build()
        params = count_params(model)
        if params > self.constraints.get("max_params", float("inf")):
            return f"params {params} > max_params {int(self.constraints['max_params'])}"
        if "max_flops" in self.constraints:
            from growsearch.metrics.cost import flops_per_example

            flops = flops_per_example(model, example.to("meta"))
            if flops > self.constraints["max_flops"]:
                return f"flops {flops} > max_flops {int(self.constraints['max_flops'])}"
        return None


def planned_config(base: ModelConfig, plan: ExpansionPlan) -> ModelConfig:
    """The architecture ``plan`` would produce, without growing any weights."""
    resolved = resolve(base, plan)
    cfg = base.widened(resolved.targets) if resolved.targets else base
    return cfg.deepened(resolved.positions)[0] if resolved.positions else cfg


def _knob(name: str, data: Any, where: str) -> Knob:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: got {show(data)}; allowed: {{choices: [...]}} or {{low, high[, step][, log]}}")
    unknown = sorted(set(data) - {"choices", "low", "high", "step", "log"})
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key; allowed: choices, low, high, step, log")
    if "choices" in data:
        choices = data["choices"]
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}.choices: got {show(choices)}; allowed: a non-empty list")
        if name == "init" and set(map(str, choices)) - set(INITS):
            raise ConfigError(f"{where}.choices: got {show(choices)}; allowed values: {', '.join(INITS)}")
        if name == "kind" and set(map(str, choices)) - set(KINDS):
            raise ConfigError(f"{where}.choices: got {show(choices)}; allowed values: {', '.join(KINDS)}")
        if name not in ("kind", "init"):
            minimum = 0 if name in ("depth", "n_heads") else 1
            for i, c in enumerate(choices):
                integral = isinstance(c, int) or name not in ("depth", "n_heads")
                if not _number(c) or c < minimum or not integral:
                    kind = "an integer" if name in ("depth", "n_heads") else "a finite number"
                    raise ConfigError(f"{where}.choices[{i}]: got {show(c)}; allowed: {kind} >= {minimum}")
        return Knob(name, choices=list(choices))
    if name in ("kind", "init"):
        raise ConfigError(f"{where}: needs choices (a list of {', '.join(KINDS if name == 'kind' else INITS)})")
    for key in ("low", "high"):
        if not _number(data.get(key)):
            raise ConfigError(f"{where}.{key}: got {show(data.get(key))}; allowed: a finite number")
    low, high = data["low"], data["high"]
    if low > high:
        raise ConfigError(f"{where}: empty range {low}..{high}; allowed: low <= high")
    minimum = 0 if name in ("depth", "n_heads") else 1
    if low < minimum:
        raise ConfigError(f"{where}.low: got {low}; allowed: >= {minimum} (growth never shrinks)")
    step = data.get("step")
    if step is not None and (not _number(step) or step <= 0):
        raise ConfigError(f"{where}.step: got {show(step)}; allowed: a positive number")
    log = data.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{where}.log: got {show(log)}; allowed: true or false")
    if name in ("depth", "n_heads") and not (isinstance(low, int) and isinstance(high, int)):
        raise ConfigError(f"{where}: got {low}..{high}; allowed: integer bounds")
    knob = Knob(name, low=low, high=high, step=step, log=log)
    try:  # Optuna's own checks (log with step, step not dividing the range, ...), now and not mid-search
        if isinstance(low, int) and isinstance(high, int) and not isinstance(step, float):
            optuna.distributions.IntDistribution(low, high, log=log, step=step or 1)
        else:
            optuna.distributions.FloatDistribution(low, high, log=log, step=step)
    except ValueError as exc:
        raise ConfigError(f"{where}: {str(exc).splitlines()[0][:160]}") from None
    return knob


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def space_path(source: str | Path) -> Path:
    """The file a ``space:`` names: a bare bundled name (``mlp.yaml``) is the bundled space
    whatever the working directory holds; any other path is taken as it is (a path with a
    folder part, ``./mlp.yaml`` included, never falls back to a bundled file)."""
    path = Path(source)
    if str(source) == path.name and (BUNDLED / path.name).exists():
        return BUNDLED / path.name
    return path


def load_space(source: str | Path | dict[str, Any], family: str | None = None) -> SearchSpace:
    """Load and validate a space from a YAML path, a bundled name (``mlp.yaml``) or a dict."""
    where, path = "space", None
    if not isinstance(source, dict):
        path = space_path(source)
        where = str(source)
        data = read_yaml(path, "space")
    else:
        data = source
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: got {type(data).__name__}; allowed: a mapping with family and knobs")
    unknown = sorted(set(data) - {"family", "knobs", "constraints"})
    if unknown:
        raise ConfigError(f"{where}: {unknown[0]}: unknown key; allowed: family, knobs, constraints")
    fam = data.get("family")
    if fam not in FAMILIES:
        raise ConfigError(f"{where}: family: got {show(fam)}; allowed: {', '.join(FAMILIES)}")
    if family is not None and fam != family:
        raise ConfigError(f"{where}: family: the space is for {fam} but the base model is {family}")
    raw = data.get("knobs")
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{where}: knobs: missing or empty; allowed knobs: {', '.join(KNOBS)}")
    knobs = {}
    for name, spec in raw.items():
        if name not in KNOBS:
            raise ConfigError(f"{where}: knobs.{name}: unknown knob; allowed: {', '.join(KNOBS)}")
        if name in ("d_model", "n_heads", "mlp_hidden") and fam not in (*TRANSFORMERS, "vision"):
            raise ConfigError(f"{where}: knobs.{name}: applies to the gpt and hf families only (and vision ViTs)")
        if name == "layer_width" and fam in TRANSFORMERS:
            raise ConfigError(f"{where}: knobs.layer_width: applies to mlp and cnn; use d_model/mlp_hidden")
        knobs[name] = _knob(name, spec, f"{where}: knobs.{name}")
    constraints = data.get("constraints") or {}
    if not isinstance(constraints, dict):
        raise ConfigError(f"{where}: constraints: got {show(constraints)}; allowed: a mapping")
    for key, value in constraints.items():
        if key not in CONSTRAINTS:
            raise ConfigError(f"{where}: constraints.{key}: unknown; allowed: {', '.join(CONSTRAINTS)}")
        if value is not None and (not _number(value) or value <= 0):
            raise ConfigError(f"{where}: constraints.{key}: got {show(value)}; allowed: a positive finite number")
    space = SearchSpace(fam, knobs, {k: v for k, v in constraints.items() if v is not None}, where,
                        str(path) if path is not None else None)
    if not any(k in knobs for k in (*WIDTH_KNOBS[fam], "depth")):
        raise ConfigError(f"{where}: knobs: no growth knob; allowed: {', '.join(WIDTH_KNOBS[fam])}, depth")
    return space
