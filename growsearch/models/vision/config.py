"""Vision bases: a timm or torchvision model, built by its own constructor, grown by growsearch.

A :class:`VisionConfig` is the constructor call -- library, model name, keyword arguments
(``num_classes``, ``img_size``, ``channels``, ``layers``, ...) -- plus the input size the
model takes. How its units group is data: :mod:`.resnet` and :mod:`.vit` describe timm's
and torchvision's ResNets and timm's ViT (width and depth, rebuilt by the constructor with
grown keyword arguments); any other model is traced (:mod:`.traced`: width only, rebuilt
as the constructor's model with resized layers, recorded in ``widths``).

A grown model is saved as ``model.safetensors`` (the library's own parameter names) and
``timm.json`` / ``torchvision.json`` beside it::

    timm.create_model(j["name"], **j["kwargs"]).load_state_dict(load_file("model.safetensors"))
    torchvision.models.resnet.ResNet(getattr(torchvision.models.resnet, j["block"]), **j["kwargs"])  # resnets
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from growsearch.errors import CheckpointError, ConfigError, PlanError
from growsearch.models.base import ModelConfig, UnitGroup
from growsearch.models.vision.resnet import ResNetLayout
from growsearch.models.vision.vit import ViTLayout

LIBRARIES = ("timm", "torchvision")
TORCHVISION_RESNETS = {"resnet18": ("BasicBlock", [2, 2, 2, 2]), "resnet34": ("BasicBlock", [3, 4, 6, 3]),
                       "resnet50": ("Bottleneck", [3, 4, 6, 3]), "resnet101": ("Bottleneck", [3, 4, 23, 3])}


def _timm():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never a hub download at run time
    try:
        import timm
    except ImportError:
        raise ConfigError("timm: timm is not installed; pip install -e '.[vision]'") from None
    return timm


def create(library: str, name: str, kwargs: dict[str, Any]) -> nn.Module:
    """The model ``library`` builds for ``name`` and ``kwargs``, randomly initialised (no weights
    are ever downloaded); an unknown name or argument is a one-line ConfigError."""
    if "pretrained" in kwargs or "weights" in kwargs:
        raise ConfigError(f"{library}:{name}: kwargs name pretrained weights; allowed: a local weights file")
    try:
        if library == "timm":
            timm = _timm()
            if not timm.is_model(name):
                raise ConfigError(f"timm:{name}: unknown model; allowed: a name in timm.list_models()")
            return timm.create_model(name, pretrained=False, **kwargs)
        try:
            import torchvision
        except ImportError:
            raise ConfigError("torchvision: torchvision is not installed; pip install -e '.[vision]'") from None
        if name in TORCHVISION_RESNETS:
            block, layers = TORCHVISION_RESNETS[name]
            args = {"layers": layers, **kwargs}
            return torchvision.models.resnet.ResNet(getattr(torchvision.models.resnet, block), **args)
        if name not in torchvision.models.list_models():
            raise ConfigError(f"torchvision:{name}: unknown model; allowed: a name in torchvision.models.list_models()")
        return torchvision.models.get_model(name, weights=None, **kwargs)
    except (TypeError, ValueError, AssertionError, RuntimeError, KeyError) as exc:
        raise ConfigError(f"{library}:{name}: cannot build the model with kwargs {json.dumps(kwargs, sort_keys=True)} "
                          f"({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''})") from None


def arch_of(model: nn.Module) -> str:
    """``resnet`` or ``vit`` where an adapter describes the model, else ``traced``."""
    kind = type(model).__module__ + "." + type(model).__name__
    if kind in ("timm.models.resnet.ResNet", "torchvision.models.resnet.ResNet"):
        return "resnet"
    if kind == "timm.models.vision_transformer.VisionTransformer":
        return "vit"
    return "traced"


@dataclass
class VisionConfig(ModelConfig):
    """A timm/torchvision model: ``library``, ``name``, constructor ``kwargs``, the ``input_size``
    (C, H, W) it takes, and for a traced model the grown ``widths`` of its unit groups."""

    library: Literal["timm", "torchvision"]
    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    input_size: list[int] = field(default_factory=lambda: [3, 32, 32])
    widths: dict[str, int] = field(default_factory=dict)

    family: ClassVar[str] = "vision"

    def validate(self) -> None:
        if len(self.input_size) != 3 or any(not isinstance(v, int) or v <= 0 for v in self.input_size):
            raise ConfigError(f"input_size: got {self.input_size}; allowed: [channels, height, width], positive")

    # -- the model and its adapter ---------------------------------------------------------
    def _key(self) -> str:
        return json.dumps([self.library, self.name, self.kwargs, self.input_size], sort_keys=True)

    @property
    def arch(self) -> str:
        """``resnet``, ``vit`` (an adapter describes it) or ``traced``."""
        return _arch(self._key())

    @property
    def layout(self) -> ResNetLayout | ViTLayout:
        """The adapter (a ResNet or ViT described as data); traced models have none."""
        return _layout(self._key())

    def build(self) -> nn.Module:
        model = create(self.library, self.name, self.kwargs)
        if self.widths:
            from growsearch.models.vision.traced import resize

            resize(model, _traced_groups(self._key()), self.widths)
        return model

    def _shapes(self) -> dict[str, tuple[int, ...]]:
        return _shapes(self._key())

    @property
    def stagewise(self) -> bool:
        """Depth positions are stage indices (a block at a stage's end), as for the cnn family."""
        return self.arch == "resnet"

    def num_layers(self) -> int:
        return {"resnet": 4, "vit": self.layout.depth if self.arch == "vit" else 0}.get(self.arch, 0)

    def unit_groups(self) -> list[UnitGroup]:
        if self.arch == "traced":
            import dataclasses

            return [dataclasses.replace(g, size=self.widths.get(g.name, g.size)) for g in _traced_groups(self._key())]
        return self.layout.unit_groups(self._shapes())

    def example_input(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(n, *self.input_size, generator=generator)

    def plan_fields(self) -> dict[str, tuple[str, int]]:
        return {"d_model": ("d_model", 1), "n_heads": ("heads.", 1), "mlp_hidden": ("mlp.", 1)} \
            if self.arch == "vit" else {}

    def fused(self) -> dict[str, tuple[int, int]]:
        return self.layout.fused() if self.arch == "vit" else {}

    def coupled(self, wanted: dict[str, int]) -> dict[str, int]:
        if self.arch == "resnet":
            return self.layout.coupled(wanted)
        if self.arch == "vit":
            return self.layout.coupled(wanted, self.d_model)
        return wanted

    # -- sizes the search spaces read ------------------------------------------------------
    @property
    def channels(self) -> list[int]:
        """A ResNet's stage widths (the residual stream of every stage)."""
        if self.arch != "resnet":
            return []
        return [g.size for g in self.unit_groups() if g.name.startswith("stage.")]

    @property
    def d_model(self) -> int:
        return self._shapes()["patch_embed.proj.weight"][0] if self.arch == "vit" else 0

    @property
    def n_heads(self) -> int:
        return self.layout.heads if self.arch == "vit" else 0

    @property
    def mlp_hidden(self) -> int:
        return self._shapes()["blocks.0.mlp.fc1.weight"][0] if self.arch == "vit" and self.num_layers() else 0

    # -- growing -----------------------------------------------------------------------------
    def _with(self, **updates: Any) -> VisionConfig:
        return VisionConfig(self.library, self.name, {**self.kwargs, **updates}, list(self.input_size),
                            dict(self.widths))

    def widened(self, targets: dict[str, int]) -> VisionConfig:
        if self.arch == "traced":
            cfg = self._with()
            cfg.widths = {**self.widths, **targets}
            return cfg
        sizes = {g.name: targets.get(g.name, g.size) for g in self.unit_groups()}
        return self._with(**self.layout.widened_kwargs(sizes))

    def deepened(self, positions: list[int]) -> tuple[VisionConfig, dict[str, str], list[str]]:
        if self.arch == "resnet":
            layers, new = self.layout.deepened(positions)
            return self._with(layers=layers), {}, new
        if self.arch == "vit":
            depth, rename, new = self.layout.deepened(positions)
            return self._with(depth=depth), rename, new
        raise PlanError(f"plan.depth: {self.library}:{self.name} has no adapter (its groups are traced): "
                        "it grows in width only; depth needs to know where a block may go")

    def identity_zeros(self, layer: str) -> list[str]:
        return self.layout.identity_zeros(layer)

    # -- saving in the library's format ------------------------------------------------------
    def rebuild_recipe(self) -> dict[str, Any] | None:
        """What rebuilds this model with the library alone (None: a traced model grown in width)."""
        if self.widths:
            return None
        recipe: dict[str, Any] = {"library": self.library, "name": self.name, "kwargs": self.kwargs,
                                  "input_size": self.input_size}
        if self.library == "torchvision" and self.name in TORCHVISION_RESNETS:
            block, layers = TORCHVISION_RESNETS[self.name]
            recipe.update(constructor="torchvision.models.resnet.ResNet", block=block,
                          kwargs={"layers": layers, **self.kwargs})
        return recipe

    def write_weights(self, model: nn.Module, directory: Path) -> None:
        """``model.safetensors`` under the library's own names, and ``timm.json`` /
        ``torchvision.json`` (name and kwargs) beside it, so that the library rebuilds it."""
        from growsearch.checkpoint import save_state, write_json

        save_state({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                   directory / "model.safetensors")
        recipe = self.rebuild_recipe()
        if recipe is not None:
            write_json(directory / f"{self.library}.json", recipe)


# -- cached facts about one constructor call (keyed by its JSON) --------------------------------
def _config(key: str) -> VisionConfig:
    library, name, kwargs, input_size = json.loads(key)
    return VisionConfig(library, name, kwargs, input_size)


@functools.lru_cache(maxsize=64)
def _meta_model(key: str) -> nn.Module:
    cfg = _config(key)
    with torch.device("meta"):
        return create(cfg.library, cfg.name, cfg.kwargs)


@functools.lru_cache(maxsize=64)
def _arch(key: str) -> str:
    return arch_of(_meta_model(key))


@functools.lru_cache(maxsize=64)
def _shapes(key: str) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in _meta_model(key).state_dict().items()}


@functools.lru_cache(maxsize=64)
def _layout(key: str) -> ResNetLayout | ViTLayout:
    cfg, model = _config(key), _meta_model(key)
    names = frozenset(_shapes(key))
    if _arch(key) == "resnet":
        return ResNetLayout(names, cfg.kwargs, cfg.library)
    heads = model.blocks[0].attn.num_heads if len(model.blocks) else int(cfg.kwargs.get("num_heads", 1))
    return ViTLayout(names, heads)


@functools.lru_cache(maxsize=16)
def _traced_groups(key: str) -> list[UnitGroup]:
    from growsearch.models.vision.traced import trace_groups

    cfg = _config(key)
    with torch.random.fork_rng(devices=[]):
        model = create(cfg.library, cfg.name, cfg.kwargs)
    return trace_groups(model, torch.zeros(1, *cfg.input_size), f"{cfg.library}:{cfg.name}")


# -- loading a user's model --------------------------------------------------------------------
def _read_source(source: str) -> tuple[str, str, dict[str, Any], list[int], Path]:
    """``timm:DIR`` (a folder with model.safetensors/model.pt and timm.json, as growsearch saves
    grown models) or ``timm:{json}`` (name, weights, kwargs, input_size, as a config gives them)."""
    library, _, rest = source.partition(":")
    if rest.startswith("{"):
        data = json.loads(rest)
        if not data.get("weights"):
            raise ConfigError(f"base.weights: {library}:{data['name']} needs a weights file (safetensors or a "
                              "state dict); nothing is downloaded")
        return library, data["name"], dict(data.get("kwargs") or {}), list(data.get("input_size") or [3, 32, 32]), \
            Path(data["weights"])
    directory = Path(rest)
    recipe_file = directory / f"{library}.json"
    if not recipe_file.is_file():
        raise ConfigError(f"{library}:{rest}: not a folder with {library}.json and model.safetensors; in a config "
                          f"give base: {{{library}: NAME, weights: FILE, kwargs: {{...}}}}")
    recipe = json.loads(recipe_file.read_text())
    weights = directory / "model.safetensors"
    kwargs = dict(recipe.get("kwargs") or {})
    return library, recipe["name"], kwargs, list(recipe.get("input_size") or [3, 32, 32]), \
        weights if weights.exists() else directory / "model.pt"


def load_vision_base(source: str) -> tuple[nn.Module, dict[str, Any]]:
    """Load ``timm:...`` / ``torchvision:...`` (see :func:`_read_source`): the model built by its
    library, the weights checked against it, one forward pass at ``input_size``; returns
    ``(model, spec)``. Every failure is one line (ConfigError/CheckpointError)."""
    from growsearch.checkpoint import read_weights_file

    library, name, kwargs, input_size, weights = _read_source(source)
    cfg = VisionConfig(library, name, kwargs, input_size)
    model = create(library, name, kwargs)
    state = read_weights_file(weights)
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        key = (missing or unexpected)[0]
        raise CheckpointError(f"{library}:{name}: the weights in {weights} do not match the model: they "
                              f"{'lack' if missing else 'have an unexpected'} tensor {key!r} ({len(missing)} missing, "
                              f"{len(unexpected)} unexpected)")
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise CheckpointError(f"{library}:{name}: the weights in {weights} do not match the model: {key!r} has "
                                  f"shape {tuple(tensor.shape)}, the model needs {tuple(expected[key].shape)} "
                                  "(check kwargs)")
    model.load_state_dict(state)
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_size))
    except (RuntimeError, AssertionError, ValueError, IndexError) as exc:
        raise ConfigError(f"input_size: {input_size} cannot go through {library}:{name} "
                          f"({str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__})") from None
    cfg.unit_groups()  # a traced model that cannot grow is refused now, in one line
    return model, cfg.to_spec()
