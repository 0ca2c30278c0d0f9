"""timm and torchvision models as bases (the ``vision`` family): see :mod:`.config`."""

from growsearch.models.vision.config import VisionConfig, create, load_vision_base

__all__ = ["VisionConfig", "create", "load_vision_base"]
