"""Named, versioned candidate pools for the predictor and growth benchmarks.

A pool is one pretrained base + candidate expansions + one fixed full-training recipe
used for every candidate and for the base's "same extra budget" reference. Since version 2
every pool asks the budget question: its plans form >= 4 groups of equal parameter count
(within 5%), each with >= 3 kinds of plan (uniform width, depth, mixed, per-layer
widths), each grown with the growth package's default init and with ``random``.

``digits-mlp`` is the **tuning pool** the manifold metric's default estimator was chosen on;
``digits-cnn`` is a second tuning pool (defined for the next choice; not yet measured). The
digits data is used by no result pool. The others are result pools and were never used to
choose anything.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from growsearch.errors import ConfigError, PlanError
from growsearch.grow import DEFAULT_INIT
from growsearch.train import TrainRecipe


@dataclass(frozen=True)
class Pool:
    name: str
    version: int
    family: str
    dataset: str
    base_epochs: int  # pretraining of the base (the dataset's default recipe otherwise)
    recipe: TrainRecipe  # the one full-training recipe of this pool
    plans: tuple[dict[str, Any], ...]
    # the growth package's default (preserving) init and random: the inits users get
    inits: tuple[str, ...] = (DEFAULT_INIT, "random")
    seeds: tuple[int, ...] = (0, 1)
    manifold: dict[str, Any] = field(default_factory=dict)  # data-size knobs only (probe sizes)
    tuning: bool = False
    checkpoint: str | None = None  # a user pool's base: a growsearch checkpoint (else pretrained)

    def candidates(self) -> list[tuple[dict[str, Any], str]]:
        return [(plan, init) for plan in self.plans for init in self.inits]

    def quick(self) -> Pool:
        """A small version for tests: 3 plans (one equal-parameter group), 1 epoch, 2 seeds."""
        recipe = dataclasses.replace(self.recipe, epochs=1)
        return dataclasses.replace(self, name=self.name + "-quick", base_epochs=2, recipe=recipe,
                                   plans=self.plans[:3], seeds=self.seeds[:2])


# Equal-parameter groups (within 5%, >= 10% apart, each inside one fixed 10% bin of
# bench/stats.equal_param_groups; v3 swapped five v2 plans so that no group straddles a bin
# edge -- the v2 measurements in docs/results list their own plans), each with >= 3 kinds
# of plan: uniform width, depth, mixed, per-layer widths. The parameter counts are in the
# comments and checked by tests/test_bench.py; they ask the budget question: "which
# expansion of this size?"
_DIGITS_MLP_PLANS = (  # base [32, 32]: 3466 parameters
    {"depth": 2}, {"width": 1.75}, {"widths": [64, 48]},  # 7690 / 7402 / 7770
    {"width": 3.5}, {"depth": 5}, {"width": 2.25, "depth": 1}, {"widths": [176, 48]},  # 21066 / 20234 / 21178 / 20426
    {"depth": 9}, {"width": 1.75, "depth": 4}, {"width": 3.0, "depth": 1}, {"widths": [208, 96]},  # ~34.9k
    {"depth": 12}, {"width": 2.75, "depth": 2}, {"widths": [176, 192]},  # 47434 / 45770 / 47354
)
_DIGITS_CNN_PLANS = (  # base 2-D channels [8, 16]
    {"width": 1.5}, {"depth": 2}, {"widths": [8, 28]},  # 11230 / 10978 / 11026
    {"width": 1.75}, {"depth": 3}, {"width": 1.25, "depth": 1}, {"widths": [20, 20]},  # 15172 / 15650 / 15160 / 15430
    {"width": 2.0}, {"insert_at": [1, 1, 1]}, {"widths": [16, 20], "depth": 1}, {"widths": [24, 20]},  # ~19.4k
    {"depth": 9}, {"width": 1.5, "depth": 3}, {"widths": [20, 44]},  # 33218 / 34798 / 34438
)
_MNIST1D_MLP_PLANS = (  # base [32, 32]: 2698 parameters
    {"depth": 2}, {"width": 1.25, "depth": 1}, {"widths": [32, 128]},  # 6922 / 6970 / 6826
    {"width": 2.75}, {"depth": 4}, {"width": 1.75, "depth": 1}, {"widths": [48, 176]},  # 12330 / 12314 / 12442 / 12362
    {"width": 3.0}, {"depth": 5}, {"width": 1.5, "depth": 2}, {"widths": [192, 32]},  # 14218 / 14426 / 14218 / 14378
    {"width": 4.0}, {"depth": 9}, {"width": 2.0, "depth": 2}, {"widths": [192, 80]},  # 23050 / 24042 / 24074 / 24122
)
_MNIST1D_CNN_PLANS = (  # base channels [8, 16]: 2002 parameters
    {"insert_at": [1, 1]}, {"widths": [8, 20], "depth": 1}, {"widths": [8, 32]},  # 5202 / 5106 / 5074
    {"depth": 4}, {"width": 1.25, "depth": 2}, {"widths": [12, 32]},  # 6034 / 6140 / 6102
    {"depth": 6}, {"width": 1.5, "depth": 1}, {"widths": [28, 16]},  # 8050 / 7798 / 7782
    {"width": 2.75}, {"width": 2.0, "depth": 1}, {"widths": [40, 16]},  # 13496 / 13594 / 13554
)
_TEXT_GPT_PLANS = (  # base d_model 32, 4 heads, mlp 64, 2 blocks: 25600 parameters
    {"width": 1.5}, {"depth": 3}, {"d_model": 48, "depth": 1}, {"mlp_hidden": 256},  # 50688 / 51232 / 50976 / 50560
    {"depth": 4}, {"mlp_hidden": 128, "depth": 2}, {"n_heads": 8, "mlp_hidden": 256},  # 59776 / 59328 / 58944
    {"depth": 5}, {"d_model": 64, "depth": 1}, {"mlp_hidden": 384},  # 68320 / 67808 / 67200
    {"depth": 7}, {"d_model": 64, "depth": 2}, {"mlp_hidden": 520},  # 85408 / 84736 / 84880
)

POOLS: dict[str, Pool] = {p.name: p for p in (
    Pool("digits-mlp", 3, "mlp", "digits", base_epochs=10,
         recipe=TrainRecipe(epochs=15, batch_size=64, lr=1e-3), plans=_DIGITS_MLP_PLANS,
         seeds=(0, 1, 2), tuning=True),
    Pool("digits-cnn", 1, "cnn", "digits", base_epochs=10,
         recipe=TrainRecipe(epochs=8, batch_size=64, lr=2e-3), plans=_DIGITS_CNN_PLANS,
         seeds=(0, 1, 2), tuning=True),
    Pool("mnist1d-mlp", 3, "mlp", "mnist1d", base_epochs=30,
         recipe=TrainRecipe(epochs=20, batch_size=128, lr=2e-3), plans=_MNIST1D_MLP_PLANS,
         seeds=(0, 1, 2)),
    Pool("mnist1d-cnn", 3, "cnn", "mnist1d", base_epochs=10,
         recipe=TrainRecipe(epochs=8, batch_size=128, lr=2e-3), plans=_MNIST1D_CNN_PLANS,
         seeds=(0, 1, 2)),
    Pool("text-gpt", 3, "gpt", "text", base_epochs=4,
         recipe=TrainRecipe(epochs=3, batch_size=32, lr=2e-3, warmup_steps=20), plans=_TEXT_GPT_PLANS,
         # data-size knobs: a sequence holds 64 predictions, so fewer examples per batch
         manifold={"probe_size": 32, "batch_size": 8}),
)}


@dataclass
class PoolFile:
    """A user-defined pool (``growsearch bench predictors --pool my_pool.yaml``): check the
    surrogate on your own problem. Give the base as a growsearch ``checkpoint`` directory
    or as a ``family`` to pretrain on ``dataset`` for ``base_epochs``."""

    dataset: str
    plans: list[dict[str, Any]]
    checkpoint: str | None = None
    family: str | None = None
    base_epochs: int = 10
    inits: list[str] = field(default_factory=lambda: [DEFAULT_INIT, "random"])
    recipe: TrainRecipe = field(default_factory=TrainRecipe)
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    manifold: dict[str, Any] = field(default_factory=dict)
    name: str = ""


def load_pool_file(path: str) -> Pool:
    """Read and check a pool file; every problem is one ConfigError naming the field."""
    from growsearch._validate import from_dict, read_yaml
    from growsearch.checkpoint import load_checkpoint
    from growsearch.data import check_dataset_name, load_dataset
    from growsearch.grow import INITS, ExpansionPlan, resolve
    from growsearch.metrics import ManifoldConfig
    from growsearch.models import config_from_spec
    from growsearch.pretrain import default_config

    spec = from_dict(PoolFile, read_yaml(path, "pool"), "pool")
    check_dataset_name(spec.dataset)
    if (spec.checkpoint is None) == (spec.family is None):
        raise ConfigError("pool: give exactly one of checkpoint (a growsearch checkpoint directory) or family")
    if spec.checkpoint is not None:
        base, base_spec, _ = load_checkpoint(spec.checkpoint)
        base_cfg = config_from_spec(base_spec)
        task = load_dataset(spec.dataset)
        try:
            base.eval()(task.x_train[:2])
        except (RuntimeError, IndexError) as exc:
            raise ConfigError(f"pool.checkpoint: the base in {spec.checkpoint} does not take dataset "
                              f"{spec.dataset!r} ({str(exc).splitlines()[0]})") from None
    else:
        base_cfg = default_config(spec.family, load_dataset(spec.dataset))
    if not spec.plans:
        raise ConfigError("pool.plans: empty; allowed: a list of expansion plans")
    for i, plan in enumerate(spec.plans):
        try:
            resolve(base_cfg, ExpansionPlan.from_dict(plan, f"pool.plans[{i}]"))
        except PlanError as exc:
            raise ConfigError(f"pool.plans[{i}]: {exc}") from None
    for i, init in enumerate(spec.inits):
        if init not in INITS:
            raise ConfigError(f"pool.inits[{i}]: got {init!r}; allowed: {', '.join(INITS)}")
    if len(spec.seeds) < 1 or spec.base_epochs < 1:
        raise ConfigError("pool.seeds must list at least one seed and pool.base_epochs be >= 1")
    ManifoldConfig.from_dict(spec.manifold, "pool.manifold")
    name = spec.name or path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return Pool(name, 0, base_cfg.family, spec.dataset, spec.base_epochs, spec.recipe, tuple(spec.plans),
                tuple(spec.inits), tuple(spec.seeds), dict(spec.manifold), tuning=False,
                checkpoint=spec.checkpoint)


def get_pool(name: str, quick: bool = False) -> Pool:
    """A named pool, or a user pool file (``*.yaml``/``*.yml``)."""
    if name.endswith((".yaml", ".yml")):
        pool = load_pool_file(name)
    elif name not in POOLS:
        raise ConfigError(f"--pool: got {name!r}; allowed: {', '.join(POOLS)}, or a pool file (*.yaml)")
    else:
        pool = POOLS[name]
    return pool.quick() if quick else pool
