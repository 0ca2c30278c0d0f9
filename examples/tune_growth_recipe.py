"""How the recipe after growth (growsearch.train.GROWTH_*) was chosen: on the tuning pool only.

    python examples/tune_growth_recipe.py > tune.json

Trains scratch, ``random`` and the preserving inits on five plans of digits-mlp (two
width, one depth, two mixed), three seeds, once per variant of the recipe after growth,
and prints the mean gain over the base (accuracy points) of every init per variant.
About 3 minutes a variant on one core. Results: docs/growth.md.
"""

from __future__ import annotations

import json
import statistics
import sys

import torch

import growsearch.train  # noqa: F401  (the module, not the function re-exported by growsearch)
from growsearch.bench.growth import run_plan
from growsearch.bench.pools import get_pool
from growsearch.bench.predictors import pool_base_model, pretrain_base
from growsearch.data import load_dataset

train_module = sys.modules["growsearch.train"]
VARIANTS = {  # (GROWTH_LR_SCALE, GROWTH_WARMUP_FRACTION)
    "lr x1, no warm-up": (1.0, 0.0),
    "lr x1, warm-up 5%": (1.0, 0.05),
    "lr x1, warm-up 20%": (1.0, 0.2),
    "lr x0.5": (0.5, 0.0),
    "lr x2": (2.0, 0.0),
}
PLANS = (0, 3, 5, 8, 10)  # w1.5, w4, d2, w1.5+d2, w2+d2


def main() -> None:
    torch.set_num_threads(1)
    pool = get_pool("digits-mlp")
    task = load_dataset(pool.dataset)
    state, spec, pretrain_final = pretrain_base(pool)
    base = pool_base_model(state, spec)
    base_score = pretrain_final["test_accuracy"]
    out = {}
    for name, (lr_scale, warmup) in VARIANTS.items():
        saved = {k: getattr(train_module, k) for k in ("GROWTH_WARMUP_FRACTION", "GROWTH_LR_SCALE")}
        train_module.GROWTH_LR_SCALE, train_module.GROWTH_WARMUP_FRACTION = lr_scale, warmup
        rows = [run_plan(pool, task, base, spec, pool.plans[i], (0, 1, 2),
                         ("random", "zero_out", "masked", "split_signed")) for i in PLANS]
        out[name] = {init: 100 * statistics.mean(r["arms"][init]["final_mean"] - base_score for r in rows)
                     for init in rows[0]["arms"]}
        for key, value in saved.items():
            setattr(train_module, key, value)
        print(name, out[name], file=sys.stderr, flush=True)
    json.dump(out, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
