"""Model families with an explicit, JSON-serialisable architecture spec.

``build(spec)`` turns a spec (a dict with a ``family`` key) into a plain ``nn.Module``;
``config_from_spec(spec)`` gives the typed config. Families: ``mlp``, ``cnn``, ``gpt``, ``hf``
(Hugging Face transformers models, :mod:`growsearch.models.hf`) and ``vision`` (timm and
torchvision models, :mod:`growsearch.models.vision`).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from growsearch.errors import ConfigError
from growsearch.models.base import ModelConfig, UnitGroup
from growsearch.models.cnn import CNNConfig
from growsearch.models.gpt import GPTConfig
from growsearch.models.hf import HFConfig
from growsearch.models.mlp import MLPConfig
from growsearch.models.vision import VisionConfig

FAMILIES: dict[str, type[ModelConfig]] = {c.family: c for c in (MLPConfig, CNNConfig, GPTConfig, HFConfig,
                                                                 VisionConfig)}


def config_from_spec(spec: dict[str, Any] | ModelConfig) -> ModelConfig:
    """The typed config of an architecture spec; unknown family or field -> ConfigError."""
    if isinstance(spec, ModelConfig):
        return spec
    if not isinstance(spec, dict):
        raise ConfigError(f"spec: got {type(spec).__name__}; allowed: a mapping with a 'family' key")
    family = spec.get("family")
    if family not in FAMILIES:
        raise ConfigError(f"spec.family: got {family!r}; allowed: {', '.join(FAMILIES)}")
    return FAMILIES[family].from_spec(spec)


def build(spec: dict[str, Any] | ModelConfig) -> nn.Module:
    """Build a freshly initialised model from its spec (uses torch's global RNG)."""
    return config_from_spec(spec).build()


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["FAMILIES", "ModelConfig", "UnitGroup", "CNNConfig", "GPTConfig", "HFConfig", "MLPConfig",
           "VisionConfig", "build", "config_from_spec", "count_params"]
