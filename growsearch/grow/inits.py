"""Growth inits: what the new units of a widened unit group and an inserted layer start as.

Everything here works on a state dict and the family-agnostic :class:`UnitGroup` (which
parameter slices produce, normalise and consume a group's units), so a family -- or an
adapter for a Hugging Face / timm architecture -- that describes its unit groups gets
every init for free.

Inits (``INITS``), each named after what it does:

* ``split_signed`` (preserving). A new unit copies the incoming weights (and norm
  parameters/statistics) of an existing unit; every *outgoing weight element* of a unit
  is split among its copies into random signed parts that sum to the original element
  (LEMON-style). The copies' outgoing weights are not proportional, so their gradients
  are not either and AdamW moves them apart.
* ``masked`` (preserving at step 0). New units get fresh incoming *and* outgoing
  weights; their outputs (on the consumer side) and the outputs of inserted layers are
  multiplied by a mask that the training loop ramps from 0 to 1 and then folds away
  (MSG-style, see :mod:`growsearch.grow.mask`). A LayerNorm spanning a masked group
  computes its statistics with the mask as weights, i.e. over the old units at 0: exact
  for every width, not only whole multiples.
* ``zero_out`` (preserving). New units: fresh incoming, zero outgoing weights. A group
  spanned by a LayerNorm would change the norm's statistics, so there it splits like
  ``split_signed``.
* ``split_positive`` (preserving; the old ``net2net``, kept as a baseline only).
  Net2WiderNet duplication with unequal *positive* per-unit shares of the outgoing
  weights: a copy's outgoing weights are proportional to its original's, their
  gradients are proportional with the same sign, and AdamW's per-coordinate
  normalisation keeps the copies (nearly) identical. Groups whose family marks
  ``preserve="zero_out"`` get ``zero_out`` instead, as before.
* ``random`` (not preserving). New units and inserted layers freshly initialised.

Depth: an inserted layer gets fresh inner weights; the parameters that make it the
identity (``identity_zeros``: output projection, or the last BatchNorm's scale/shift) are
zero for the preserving inits, fresh and masked for ``masked``, fresh for ``random``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from growsearch.models import UnitGroup


@dataclass(frozen=True)
class Init:
    """One growth init: its name, whether it preserves the function, what it does."""

    name: str
    preserving: bool
    summary: str


_ALL = (
    Init("split_signed", True, "copy incoming weights; split each outgoing weight into random "
                               "signed parts summing to it (LEMON-style)"),
    Init("masked", True, "fresh new units and layers whose output is masked, mask ramped 0->1 "
                         "in training (MSG-style)"),
    Init("zero_out", True, "fresh incoming, zero outgoing weights"),
    Init("split_positive", True, "baseline: copy incoming weights, positive per-unit shares of "
                                 "the outgoing weights (Net2Net)"),
    Init("random", False, "fresh new units and layers (changes the function)"),
)
INIT_INFO: dict[str, Init] = {i.name: i for i in _ALL}
INITS: tuple[str, ...] = tuple(INIT_INFO)
PRESERVING_INITS: tuple[str, ...] = tuple(i.name for i in _ALL if i.preserving)
#: The init growsearch uses when none is given: the winner of ``growsearch bench growth``
#: across the result pools (docs/growth.md).
DEFAULT_INIT = "masked"
#: Spread of the signed parts of a split outgoing weight, relative to the standard
#: deviation of the consumer weight it comes from.
SIGNED_SPLIT_SPREAD = 0.5


def unit_map(n: int, new_n: int, gen: torch.Generator) -> torch.Tensor:
    """Old unit behind every new unit: the first ``n`` are themselves; whole multiples
    replicate every unit equally (keeps LayerNorm statistics); the rest are a random subset."""
    reps, rest = divmod(new_n, n)
    extra = torch.randperm(n, generator=gen)[:rest]
    return torch.cat([torch.arange(n).repeat(reps), extra])


def _positive_shares(units: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    """Unequal positive shares of each old unit's outgoing weights among its copies; sum 1."""
    raw = 0.5 + torch.rand(len(units), generator=gen, dtype=torch.float64)
    total = torch.zeros(n, dtype=torch.float64).index_add_(0, units, raw)
    return raw / total[units]


def _signed_split(t: torch.Tensor, axis: int, elements: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Split every element of ``t`` along ``axis`` among its copies (``elements`` names the
    source of each new element): equal parts plus zero-sum Gaussian noise, in float64."""
    src = t.detach().movedim(axis, 0).double().cpu()
    counts = torch.zeros(src.shape[0], dtype=torch.float64).index_add_(
        0, elements, torch.ones(len(elements), dtype=torch.float64))
    shape = (-1,) + (1,) * (src.dim() - 1)
    spread = SIGNED_SPLIT_SPREAD * (src.std().item() if src.numel() > 1 else 0.0)
    noise = torch.randn((len(elements), *src.shape[1:]), generator=gen, dtype=torch.float64) * spread
    mean_noise = torch.zeros_like(src).index_add_(0, elements, noise) / counts.view(shape)
    out = src[elements] / counts[elements].view(shape) + noise - mean_noise[elements]
    return out.movedim(0, axis).to(dtype=t.dtype, device=t.device)


def width_mode(init: str, group: UnitGroup) -> str:
    """How ``init`` fills a group's new units: ``split_signed``, ``split_positive``,
    ``zero_out`` or ``fresh`` (incoming and outgoing weights from a fresh model)."""
    if init in ("random", "masked"):
        return "fresh"
    if init == "zero_out":
        return "split_signed" if group.normalized else "zero_out"
    if init == "split_positive":
        return "split_positive" if group.preserve == "split" else "zero_out"
    return "split_signed"


def _fresh_slice(fresh: torch.Tensor, like: torch.Tensor, axis: int, start: int, stop: int) -> torch.Tensor:
    index = [slice(0, s) for s in like.shape]
    index[axis] = slice(start, stop)
    return fresh[tuple(index)].to(like.dtype).clone()


def widen_group(state: dict[str, torch.Tensor], fresh: dict[str, torch.Tensor], group: UnitGroup,
                new_size: int, init: str, gen: torch.Generator) -> torch.Tensor:
    """Grow ``group`` to ``new_size`` units in ``state`` (in place) as ``init`` says.

    ``fresh`` is the state dict of a freshly initialised model of the widened
    architecture (same names; where fresh weights come from). Returns the unit map (the
    old unit each of the ``new_size`` units copies; for fresh units, the one it would).
    """
    n = group.size
    mode = width_mode(init, group)
    units = unit_map(n, new_size, gen)
    unit_shares = _positive_shares(units, n, gen) if mode == "split_positive" else None

    def grow(name: str, axis: int, role: str) -> None:
        t, b = state[name], group.block_of(name)  # elements per unit can differ per parameter (GQA)
        elements = (units[:, None] * b + torch.arange(b)).flatten()
        shares = unit_shares.repeat_interleave(b) if unit_shares is not None else None
        if mode in ("split_signed", "split_positive"):
            if role == "consumer" and mode == "split_signed":
                out = _signed_split(t, axis, elements, gen)
            else:
                out = t.index_select(axis, elements.to(t.device))
                if role == "consumer":
                    view = [1] * t.dim()
                    view[axis] = -1
                    out = (out.double() * shares.to(t.device).view(view)).to(t.dtype)
        else:
            new = _fresh_slice(fresh[name], t, axis, n * b, new_size * b).to(t.device)
            if role == "consumer" and mode == "zero_out":
                new.zero_()
            out = torch.cat([t, new], dim=axis)
        state[name] = out

    for name, axis in group.producers:
        grow(name, axis, "producer")
    for name in group.norms:
        grow(name, 0, "norm")
    for name, axis in group.consumers:
        grow(name, axis, "consumer")
    return units
