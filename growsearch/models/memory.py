"""The memory guard: refuse a model that would not fit, before allocating any of it.

A spec (``spec.json``, a plan applied to a base, a search candidate) is built on PyTorch's
``meta`` device -- shapes only, no storage -- and its parameters are counted. Growing and
training hold about four float32 copies of the parameters (the model, a fresh init or
gradients, and Adam's two moments), so the estimate is ``16 bytes x parameters``; above
the limit the spec is refused in one line. Layer counts and unit-group sizes are bounded
first, so that not even the meta build of an absurd spec (``depth: 100000000``) runs.

The limit is half the machine's physical memory unless ``GROWSEARCH_MEMORY_LIMIT``
(``8GB``, ``512MB``, bytes) or ``growsearch --memory-limit`` says otherwise.
"""

from __future__ import annotations

import os
import re

import torch

from growsearch.errors import ConfigError, GrowsearchError
from growsearch.models.base import ModelConfig

ENV = "GROWSEARCH_MEMORY_LIMIT"
BYTES_PER_PARAM = 16  # float32 weights x 4: model, fresh init / gradients, two Adam moments
MAX_LAYERS = 1000  # layers, blocks or residual blocks of one model
MAX_UNITS = 1 << 24  # units of one group (hidden width, channels, d_model)
_UNITS = {"": 1, "B": 1, "K": 1e3, "KB": 1e3, "M": 1e6, "MB": 1e6, "G": 1e9, "GB": 1e9, "T": 1e12, "TB": 1e12,
          "KIB": 1024, "MIB": 1024 ** 2, "GIB": 1024 ** 3, "TIB": 1024 ** 4}


def parse_size(text: str, where: str = ENV) -> int:
    """``"8GB"`` -> 8e9 bytes (also ``512MB``, ``2GiB``, plain bytes); a bad value is a ConfigError."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", str(text))
    unit = match.group(2).upper() if match else ""
    if match is None or unit not in _UNITS or float(match.group(1)) <= 0:
        raise ConfigError(f"{where}: got {str(text)[:40]!r}; allowed: a positive size such as 8GB, 512MB or bytes")
    return int(float(match.group(1)) * _UNITS[unit])


def memory_limit() -> int:
    """Bytes a model may need: ``GROWSEARCH_MEMORY_LIMIT``, else half the physical memory."""
    if os.environ.get(ENV):
        return parse_size(os.environ[ENV])
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        return 8 * 1024 ** 3


def _layers(cfg: ModelConfig) -> int:
    blocks = getattr(cfg, "blocks", None)
    if isinstance(blocks, list):
        return sum(int(b) for b in blocks)
    return cfg.num_layers()


def _units(cfg: ModelConfig) -> int:
    sizes = []
    for name in ("hidden", "channels", "d_model", "mlp_hidden", "n_heads", "head_dim", "in_dim", "vocab_size",
                 "block_size", "length", "in_channels", "out_dim", "num_classes"):
        value = getattr(cfg, name, None)
        sizes += [v for v in (value if isinstance(value, list) else [value]) if isinstance(v, int)]
    return max(sizes, default=0)


def estimate_bytes(cfg: ModelConfig) -> int:
    """Bytes that growing and training ``cfg`` needs (parameters counted on the meta device)."""
    with torch.device("meta"):
        model = cfg.build()
    return BYTES_PER_PARAM * sum(p.numel() for p in model.parameters())


def _gb(n: float) -> str:
    return f"{n / 1e9:.3g} GB"


def check_memory(cfg: ModelConfig, what: str, error: type[GrowsearchError] = ConfigError) -> int:
    """Raise ``error`` unless the model ``cfg`` describes fits the memory limit; return its estimate.

    ``what`` names the thing in the message (``spec``, ``plan``, a file)."""
    layers, units = _layers(cfg), _units(cfg)
    if layers > MAX_LAYERS:
        raise error(f"{what}: {layers} layers/blocks; allowed: at most {MAX_LAYERS}")
    if units > MAX_UNITS:
        raise error(f"{what}: a layer of {units} units; allowed: at most {MAX_UNITS}")
    try:
        need = estimate_bytes(cfg)
    except (RuntimeError, OverflowError, ValueError) as exc:
        raise error(f"{what}: the model cannot be built ({type(exc).__name__}: "
                    f"{str(exc).splitlines()[0][:120] if str(exc) else ''})") from None
    limit = memory_limit()
    if need > limit:
        raise error(f"{what}: the model needs about {_gb(need)} ({need // BYTES_PER_PARAM} parameters x "
                    f"{BYTES_PER_PARAM} bytes for weights, init, gradients and optimizer); allowed: at most "
                    f"{_gb(limit)} (set {ENV} or growsearch --memory-limit to change it)")
    return need
