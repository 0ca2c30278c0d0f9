"""Growth operators: width, depth and mixed expansion of a pretrained model.

``grow(model, spec, plan, init, seed)`` returns the grown model and its spec;
function-preserving inits (``net2net``, ``zero``) are verified on a probe batch and the
measured deviation is reported. See :mod:`growsearch.grow.operators` for the inits.
"""

from growsearch.grow.operators import DEFAULT_INIT, INITS, PRESERVING_INITS, GrowResult, grow, output_diff
from growsearch.grow.plan import ExpansionPlan, ResolvedPlan, resolve

__all__ = ["DEFAULT_INIT", "INITS", "PRESERVING_INITS", "ExpansionPlan", "GrowResult", "ResolvedPlan",
           "grow", "output_diff", "resolve"]
