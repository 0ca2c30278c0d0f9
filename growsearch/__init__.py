"""growsearch: find out how to grow a small pretrained model -- wider, deeper, or both.

Python API (the CLI is a thin layer over it)::

    from growsearch import pretrain, grow, ExpansionPlan, load_checkpoint
    model, spec, _ = pretrain("mlp", "mnist1d")
    result = grow(model, spec, ExpansionPlan(width=2, depth=1))  # default init: DEFAULT_INIT
"""

__version__ = "0.1.0"

from growsearch.checkpoint import load_checkpoint, save_checkpoint
from growsearch.data import Task, load_dataset
from growsearch.errors import GrowsearchError
from growsearch.grow import DEFAULT_INIT, INITS, ExpansionPlan, GrowResult, grow
from growsearch.models import build, config_from_spec, count_params
from growsearch.train import TrainRecipe, evaluate, train

__all__ = ["DEFAULT_INIT", "INITS", "ExpansionPlan", "GrowResult", "GrowsearchError", "Task", "TrainRecipe",
           "build", "config_from_spec", "count_params", "evaluate", "grow", "load_checkpoint",
           "load_dataset", "save_checkpoint", "train", "__version__"]
