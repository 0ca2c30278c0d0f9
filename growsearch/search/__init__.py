"""The growth search engine.

* :mod:`~growsearch.search.space` -- YAML search spaces compiled to Optuna distributions.
* :mod:`~growsearch.search.config` -- the validated experiment config.
* :mod:`~growsearch.search.promote` -- promotion policies (what gets full training).
* :mod:`~growsearch.search.schedulers` -- early stopping of full training (synchronous successive halving; ASHA).
* :mod:`~growsearch.search.executors` -- where trials run (in-process; Ray Tune).
* :mod:`~growsearch.search.engine` -- the loop and resume (the results folder: :mod:`growsearch.results`).
"""

from growsearch.search.config import SearchConfig, load_config
from growsearch.search.engine import SearchResult, run_search
from growsearch.search.space import SearchSpace, load_space

DEMO_CONFIG = {
    "name": "demo-mnist1d-mlp",
    "base": {"pretrain": {"family": "mlp", "dataset": "mnist1d", "epochs": 30, "seed": 0}},
    "space": "mlp.yaml",
    "budget": {"full_trainings": 2.0},
    "surrogate": "manifold",
    "training": {"epochs": 12, "lr": 0.002, "batch_size": 128},
    "early_stopping": {"policy": "successive_halving", "grace_epochs": 3, "reduction_factor": 3},
    "sampler": {"name": "tpe", "seed": 0},
}

__all__ = ["DEMO_CONFIG", "SearchConfig", "SearchResult", "SearchSpace", "load_config", "load_space",
           "run_search"]
