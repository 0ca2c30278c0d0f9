"""The mask of masked growth (``init="masked"``), ramped by the training loop, then folded.

A model grown with ``masked`` carries a :class:`GrowthMask` as ``model.growth_mask``:

* every consumer weight of a widened group is parametrised as ``W * v`` where ``v`` is 1
  for the old units and ``m`` for the new ones (the new units' outputs are masked);
* every ``identity_zeros`` parameter of an inserted layer is parametrised as ``W * m``
  (the inserted layer's output is masked);
* every LayerNorm spanning a widened group computes its mean and variance with weights
  ``v`` (over the old units at ``m = 0``, the plain LayerNorm at ``m = 1``).

At ``m = 0`` the grown model computes exactly the base's function; the training loop
(:func:`growsearch.train.train`) raises ``m`` linearly to 1 over ``recipe.mask_steps``
steps and then calls :meth:`GrowthMask.fold`, which removes the parametrisations and
the weighted LayerNorms: the model is a plain family model again (same parameter
objects, so the optimiser's state carries on). A deep copy of the model copies its mask.

Scores of a grown model are computed on it *as grown*, mask at 0 through its
parametrisations (:func:`growsearch.metrics.score_model`). Folding is exact at ``m = 1``,
and at any ``m`` where no norm spans a masked group; at ``m < 1`` a plain LayerNorm/RMSNorm
over the widened width computes other statistics than the masked one, so an untrained
masked model whose norms are masked has no plain equivalent: :func:`check_savable` refuses
to save it (``growsearch grow --out`` saves the ``zero_out`` growth there instead).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from growsearch.errors import PlanError

MASK_ATTR = "growth_mask"


class _Ramp:
    """The mask's current value ``m``, shared by every parametrisation of one model."""

    def __init__(self) -> None:
        self.value = 0.0


class _ScaleNew(nn.Module):
    """Parametrisation ``W -> W * v`` along ``axis``: 1 for ``old`` elements, ``m`` after."""

    def __init__(self, ramp: _Ramp, axis: int, old: int) -> None:
        super().__init__()
        self.ramp, self.axis, self.old = ramp, axis, old

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if self.old == 0:
            return w * self.ramp.value
        v = torch.ones(w.shape[self.axis], dtype=w.dtype, device=w.device)
        v[self.old:] = self.ramp.value
        shape = [1] * w.dim()
        shape[self.axis] = -1
        return w * v.view(shape)


class MaskedLayerNorm(nn.LayerNorm):
    """LayerNorm whose statistics weight the last ``n - old`` features by the ramp's ``m``.

    Same parameters and state-dict keys as the :class:`nn.LayerNorm` it replaces.
    """

    def __init__(self, norm: nn.LayerNorm, ramp: _Ramp, old: int) -> None:
        nn.Module.__init__(self)
        self.normalized_shape, self.eps = norm.normalized_shape, norm.eps
        self.elementwise_affine = norm.elementwise_affine
        self.weight, self.bias = norm.weight, norm.bias
        self.ramp, self.old = ramp, old

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = torch.ones(x.shape[-1], dtype=x.dtype, device=x.device)
        v[self.old:] = self.ramp.value
        p = v / v.sum()
        mean = (x * p).sum(-1, keepdim=True)
        var = ((x - mean).square() * p).sum(-1, keepdim=True)
        y = (x - mean) / torch.sqrt(var + self.eps)
        if self.weight is not None:
            y = y * self.weight
        if self.bias is not None:
            y = y + self.bias
        return y

    def plain(self) -> nn.LayerNorm:
        """The ordinary LayerNorm with the same parameter objects."""
        norm = nn.LayerNorm(self.normalized_shape, eps=self.eps, elementwise_affine=self.elementwise_affine,
                            device=self.weight.device if self.weight is not None else None)
        if self.weight is not None:
            norm.weight = self.weight
        if self.bias is not None:
            norm.bias = self.bias
        return norm


def is_norm(model: nn.Module, param: str) -> bool:
    """Whether ``param`` belongs to a 1-D LayerNorm or RMSNorm that masked growth can weight."""
    module = model.get_submodule(param.rpartition(".")[0])
    # timm's channels-first LayerNorm2d normalises another axis than the last: not weighted
    plain = isinstance(module, nn.LayerNorm) and not type(module).__name__.lower().endswith("2d")
    return _is_rms_norm(module) or (plain and len(module.normalized_shape) == 1)


def _is_rms_norm(module: nn.Module) -> bool:
    """transformers' RMSNorm layout: a 1-D ``weight`` and ``variance_epsilon``."""
    weight = getattr(module, "weight", None)
    return hasattr(module, "variance_epsilon") and isinstance(weight, nn.Parameter) and weight.dim() == 1


def _masked_rms_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """RMSNorm whose mean square weights the features from ``growth_old`` on by ``m``
    (computed in float32 like transformers' own)."""
    h = x.float()
    v = torch.ones(h.shape[-1], dtype=h.dtype, device=h.device)
    v[self.growth_old:] = self.growth_ramp.value
    variance = (h.pow(2) * v).sum(-1, keepdim=True) / v.sum()
    return self.weight * (h * torch.rsqrt(variance + self.variance_epsilon)).to(x.dtype)


_MASKED_RMS: dict[type, type] = {}


def _masked_rms_class(cls: type) -> type:
    if cls not in _MASKED_RMS:
        _MASKED_RMS[cls] = type(f"Masked{cls.__name__}", (cls,), {"forward": _masked_rms_forward})
    return _MASKED_RMS[cls]


def _parent(model: nn.Module, path: str) -> tuple[nn.Module, str]:
    parent, _, child = path.rpartition(".")
    return (model.get_submodule(parent) if parent else model), child


class GrowthMask:
    """The mask of one masked-grown model: :meth:`set` the ramp, :meth:`fold` it away."""

    def __init__(self, model: nn.Module) -> None:
        self.ramp = _Ramp()
        self.ramped = False  # set by :meth:`set`: the training loop has begun the ramp
        self.model = model
        self.parametrized: list[tuple[nn.Module, str]] = []
        self.norms: list[str] = []  # module paths of MaskedLayerNorms

    @property
    def value(self) -> float:
        return self.ramp.value

    def set(self, m: float) -> None:
        self.ramp.value = float(min(max(m, 0.0), 1.0))
        self.ramped = True

    @property
    def fold_is_exact(self) -> bool:
        """Whether :meth:`fold` at the current ``m`` keeps the function: at ``m = 1``, or when
        no LayerNorm/RMSNorm spans a masked group (parametrisations fold exactly at any ``m``)."""
        return self.ramp.value >= 1.0 or not self.norms

    def mask_param(self, name: str, axis: int, old: int) -> None:
        """Multiply ``name``'s elements from ``old`` on along ``axis`` by ``m`` (all if 0)."""
        module, tensor = _parent(self.model, name)
        parametrize.register_parametrization(module, tensor, _ScaleNew(self.ramp, axis, old), unsafe=True)
        self.parametrized.append((module, tensor))

    def mask_norm(self, param: str, old: int) -> None:
        """Weight the statistics of the LayerNorm owning ``param`` (its features >= ``old``)."""
        path = param.rpartition(".")[0]
        if path in self.norms:
            return
        module = self.model.get_submodule(path)
        if _is_rms_norm(module):  # transformers' RMSNorm (Llama, Mistral, Qwen2): same object, masked forward
            module.__class__ = _masked_rms_class(type(module))
            module.growth_ramp, module.growth_old = self.ramp, old
        elif not is_norm(self.model, param):  # not a plain 1-D LayerNorm (timm's LayerNorm2d, a BatchNorm)
            raise PlanError(f"init: masked growth needs a 1-D nn.LayerNorm or RMSNorm at {path!r}, found "
                            f"{type(module).__name__}; allowed here: split_signed, split_positive")
        else:
            parent, child = _parent(self.model, path)
            setattr(parent, child, MaskedLayerNorm(module, self.ramp, old))
        self.norms.append(path)

    def fold(self) -> None:
        """Bake the current ``m`` into the weights and restore plain modules (m=1: exact).

        Written out rather than ``parametrize.remove_parametrizations``: that deletes the
        property from the parametrised class, which deep copies of the model share.
        """
        names: dict[int, tuple[nn.Module, list[str]]] = {}
        for module, tensor in self.parametrized:
            entry = names.setdefault(id(module), (module, []))
            if tensor not in entry[1]:
                entry[1].append(tensor)
        for module, tensors in names.values():
            originals = {}
            for tensor in tensors:
                original = module.parametrizations[tensor].original
                with torch.no_grad():
                    original.copy_(getattr(module, tensor))
                originals[tensor] = original
            del module._modules["parametrizations"]
            module.__class__ = module.__class__.__bases__[0]  # this module only; copies keep theirs
            for tensor, original in originals.items():
                module.register_parameter(tensor, original)
        for path in self.norms:
            parent, child = _parent(self.model, path)
            norm = getattr(parent, child)
            if isinstance(norm, MaskedLayerNorm):
                setattr(parent, child, norm.plain())
            else:
                norm.__class__ = norm.__class__.__bases__[0]
                del norm.growth_ramp, norm.growth_old
        self.parametrized, self.norms = [], []
        self.model.__dict__.pop(MASK_ATTR, None)


def growth_mask(model: nn.Module) -> GrowthMask | None:
    """The mask a model grown with ``init="masked"`` still carries, or None."""
    return model.__dict__.get(MASK_ATTR)


def attach(model: nn.Module, mask: GrowthMask) -> None:
    model.__dict__[MASK_ATTR] = mask


def check_savable(model: nn.Module) -> None:
    """PlanError (one line) for an untrained masked model that no plain model equals: its
    mask never ramped, a LayerNorm/RMSNorm spanning widened units. A model whose ramp has
    begun (a checkpoint during training) is folded at its current value, as the training
    loop does when a run stops inside the ramp."""
    mask = growth_mask(model)
    if mask is None or mask.fold_is_exact or mask.ramped:
        return
    more = f" and {len(mask.norms) - 1} more" if len(mask.norms) > 1 else ""
    raise PlanError(f"init: cannot save a masked growth before training: folding its mask at 0 changes the "
                    f"function where a LayerNorm/RMSNorm spans widened units ({mask.norms[0]!r}{more}); "
                    "train it first, or grow with --init zero_out (exact at whole multiples)")


def fold_mask(model: nn.Module) -> dict[str, Any]:
    """Fold a model's mask (if any) at its current value; what it was, for reports."""
    mask = growth_mask(model)
    if mask is None:
        return {}
    value = mask.value
    mask.fold()
    return {"mask_folded_at": value}


__all__ = ["GrowthMask", "MaskedLayerNorm", "attach", "check_savable", "fold_mask", "growth_mask", "is_norm"]
