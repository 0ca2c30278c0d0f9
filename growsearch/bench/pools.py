"""Named, versioned candidate pools for the predictor and growth benchmarks.

A pool is one pretrained base + candidate expansions (width, depth and mixed plans of
several sizes, each grown with the default init and ``random``) + one fixed full-training
recipe used for every candidate and for the base's "same extra budget" reference.
Plans were chosen so that several groups have (nearly) equal parameter counts -- the
parameter counts are listed in docs/benchmarks.md.

``digits-mlp`` is the **tuning pool**: the manifold metric's defaults were chosen on it.
The others are result pools and were never used to choose a hyperparameter.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from growsearch.errors import ConfigError
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
    inits: tuple[str, ...] = (DEFAULT_INIT, "random")
    seeds: tuple[int, ...] = (0, 1)
    manifold: dict[str, Any] = field(default_factory=dict)  # data-size knobs only (probe sizes)
    tuning: bool = False

    def candidates(self) -> list[tuple[dict[str, Any], str]]:
        return [(plan, init) for plan in self.plans for init in self.inits]

    def quick(self) -> Pool:
        """A small version for tests: 3 plans, 1 epoch, 2 seeds."""
        recipe = dataclasses.replace(self.recipe, epochs=1)
        return dataclasses.replace(self, name=self.name + "-quick", base_epochs=2, recipe=recipe,
                                   plans=self.plans[:3])


_MLP_PLANS = (
    {"width": 1.5}, {"width": 2.0}, {"width": 3.0}, {"width": 4.0},
    {"depth": 1}, {"depth": 2}, {"depth": 6},
    {"widths": [64, 32]}, {"width": 1.5, "depth": 2}, {"width": 2.0, "depth": 1},
    {"width": 2.0, "depth": 2}, {"widths": [32, 96]},
)

POOLS: dict[str, Pool] = {p.name: p for p in (
    Pool("digits-mlp", 1, "mlp", "digits", base_epochs=10,
         recipe=TrainRecipe(epochs=15, batch_size=64, lr=1e-3), plans=_MLP_PLANS, tuning=True),
    Pool("mnist1d-mlp", 1, "mlp", "mnist1d", base_epochs=30,
         recipe=TrainRecipe(epochs=20, batch_size=128, lr=2e-3), plans=_MLP_PLANS),
    Pool("mnist1d-cnn", 1, "cnn", "mnist1d", base_epochs=10,
         recipe=TrainRecipe(epochs=8, batch_size=128, lr=2e-3),
         plans=({"width": 1.5}, {"width": 2.0}, {"width": 3.0}, {"depth": 1}, {"depth": 2},
                {"depth": 4}, {"widths": [16, 16]}, {"widths": [8, 32]}, {"width": 1.5, "depth": 1},
                {"width": 2.0, "depth": 2}, {"insert_at": [0, 0]}, {"insert_at": [1, 1]})),
    Pool("text-gpt", 1, "gpt", "text", base_epochs=4,
         recipe=TrainRecipe(epochs=3, batch_size=32, lr=2e-3, warmup_steps=20),
         plans=({"d_model": 64}, {"n_heads": 8}, {"mlp_hidden": 128}, {"mlp_hidden": 256},
                {"n_heads": 8, "mlp_hidden": 128}, {"depth": 1}, {"depth": 2}, {"depth": 4},
                {"d_model": 64, "depth": 1}, {"n_heads": 6, "mlp_hidden": 96, "depth": 1},
                {"width": 2.0}, {"mlp_hidden": 128, "depth": 2}),
         # data-size knobs: a sequence holds 64 predictions, so fewer examples per batch
         manifold={"probe_size": 32, "batch_size": 8}),
)}


def get_pool(name: str, quick: bool = False) -> Pool:
    if name not in POOLS:
        raise ConfigError(f"--pool: got {name!r}; allowed: {', '.join(POOLS)}")
    return POOLS[name].quick() if quick else POOLS[name]
