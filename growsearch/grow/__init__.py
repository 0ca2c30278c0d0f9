"""Growth operators: width, depth and mixed expansion of a pretrained model.

``grow(model, spec, plan, init, seed)`` returns the grown model and its spec;
function-preserving inits are verified on a probe batch and the measured deviation is
reported. :mod:`growsearch.grow.inits` describes the inits (``DEFAULT_INIT`` is the
one ``growsearch bench growth`` measured best), :mod:`growsearch.grow.mask` the ramp of
masked growth, :mod:`growsearch.grow.symmetry` the probe of whether new units stay copies.
"""

from growsearch.grow.inits import DEFAULT_INIT, INIT_INFO, INITS, PRESERVING_INITS
from growsearch.grow.mask import fold_mask, growth_mask
from growsearch.grow.operators import GrowResult, grow, output_diff
from growsearch.grow.plan import ExpansionPlan, ResolvedPlan, resolve

__all__ = ["DEFAULT_INIT", "INITS", "INIT_INFO", "PRESERVING_INITS", "ExpansionPlan", "GrowResult",
           "ResolvedPlan", "fold_mask", "grow", "growth_mask", "output_diff", "resolve"]
