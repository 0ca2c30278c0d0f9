"""Hugging Face transformers models as a growsearch family (``hf``).

One file per architecture describes its unit groups as data (:mod:`.base` explains the
description); growth itself is the family-agnostic code in :mod:`growsearch.grow`.
"""

from growsearch.models.hf import bert, gpt2, llama  # noqa: F401 - registers the architectures
from growsearch.models.hf.base import (
    ARCHITECTURES,
    DATA_PREFIX,
    Architecture,
    HFConfig,
    HFModel,
    Roles,
    load_hf_directory,
    supported,
)

__all__ = ["ARCHITECTURES", "DATA_PREFIX", "Architecture", "HFConfig", "HFModel", "Roles",
           "load_hf_directory", "supported"]
