"""The declarative description of a transformers architecture, and the family built on it.

An :class:`Architecture` says, as data, where a model of one Hugging Face architecture
keeps the parameters that produce, consume and normalise each set of units: the residual
stream (``d_model``), the attention heads and the MLP units of every layer. Templates name
parameters relative to the HF model; ``{L}`` stands for one layer's prefix. From that,
:class:`HFConfig` derives the :class:`~growsearch.models.base.UnitGroup` list that the
family-agnostic growth operators in :mod:`growsearch.grow` consume -- no growth code per
architecture. Adding an architecture is one such description (``gpt2.py``, ``llama.py``,
``bert.py``).

Why not torch-pruning's dependency graph: it traces a forward pass to *discover* the same
couplings, which costs a trace per model, handles GPT-2's fused q/k/v and grouped-query
attention only through per-model special cases, and answers "which slices go together"
for removal, not which copies need outgoing weights split or which norms must be scaled
for a tied output head. A dozen lines of data per architecture are shorter than the
glue, exact by construction, and readable in review.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from growsearch.errors import ConfigError, PlanError
from growsearch.models.base import ModelConfig, UnitGroup, renumbered_layers

Slots = tuple[tuple[str, int], ...]  # (parameter template, axis)

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                   "merges.txt", "vocab.txt", "tokenizer.model", "added_tokens.json", "chat_template.jinja")


@dataclass(frozen=True)
class Roles:
    """Parameters that produce, consume and normalise one set of units (templates)."""

    producers: Slots = ()
    consumers: Slots = ()
    norms: tuple[str, ...] = ()


@dataclass(frozen=True)
class Architecture:
    """How one transformers architecture is laid out, for growth.

    ``sizes`` maps ``d_model``, ``heads``, ``mlp``, ``n_layers`` (and ``kv_heads``,
    ``head_dim`` where the config has them) to config keys. ``stream`` holds the residual
    stream's parameters outside the layers, ``stream_layer`` those inside each layer.
    ``embedding`` and ``lm_head``/``final_norm`` say how a tied output head is handled:
    when the config ties the head to the embedding, the head *produces* (its columns are
    the embedding's) and the final norm's affine parameters take the split shares instead.
    ``identity`` lists the per-layer parameters whose zeroing makes an inserted layer
    the identity (exact for pre-norm blocks; ``post_norm`` blocks are not, and say so).
    ``follow_d_model`` are extra groups sized like the stream (BERT's pooler).
    """

    name: str
    model_types: tuple[str, ...]
    task: Literal["causal_lm", "sequence_classification"]
    layers: str
    sizes: dict[str, str]
    stream: Roles
    stream_layer: Roles
    heads: Roles
    mlp: Roles
    identity: tuple[str, ...]
    embedding: str
    lm_head: str | None = None
    final_norm: tuple[str, ...] = ()
    fused: dict[str, tuple[int, int]] = field(default_factory=dict)
    heads_follow_width: bool = False  # head_dim = d_model / n_heads (GPT-2, BERT)
    post_norm: bool = False
    follow_d_model: dict[str, Roles] = field(default_factory=dict)
    mlp_default: int = 4  # MLP size when the config leaves it unset, as a multiple of d_model


ARCHITECTURES: dict[str, Architecture] = {}


def register(arch: Architecture) -> Architecture:
    for model_type in arch.model_types:
        ARCHITECTURES[model_type] = arch
    return arch


def supported() -> str:
    return ", ".join(sorted(ARCHITECTURES))


def _transformers():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never a hub download at run time
    try:
        import transformers
    except ImportError:
        raise ConfigError("hf: transformers is not installed; pip install -e '.[hf]'") from None
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()  # rich shows growsearch's own progress
    return transformers


class HFModel(nn.Module):
    """A transformers model seen as growsearch sees models: token ids in, logits out.

    The HF model is the ``hf`` attribute, saved and loaded with its own classes. For an
    encoder, positions holding ``pad_token_id`` are masked out of attention.
    """

    def __init__(self, hf: nn.Module, task: str) -> None:
        super().__init__()
        self.hf = hf
        self.task = task
        self.pad_token_id = getattr(hf.config, "pad_token_id", None)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        if self.task == "causal_lm":
            return self.hf(input_ids=input_ids, use_cache=False).logits
        mask = None if self.pad_token_id is None else (input_ids != self.pad_token_id).long()
        return self.hf(input_ids=input_ids, attention_mask=mask).logits


@dataclass
class HFConfig(ModelConfig):
    """A Hugging Face model: its architecture adapter, its transformers config (as a dict),
    where its tokenizer lives, and the token block length its data is cut into."""

    arch: str
    config: dict[str, Any]
    tokenizer_dir: str | None = None
    block_size: int = 64

    family: ClassVar[str] = "hf"

    def validate(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ConfigError(f"spec.arch: got {self.arch!r}; supported: {supported()}")
        if self.block_size <= 0:
            raise ConfigError(f"spec.block_size: got {self.block_size}; allowed: a positive integer")

    # -- reading the config ---------------------------------------------------------------
    @property
    def adapter(self) -> Architecture:
        return ARCHITECTURES[self.arch]

    def size(self, what: str) -> int:
        c, keys = self.config, self.adapter.sizes
        if what == "mlp":
            return c.get(keys["mlp"]) or self.adapter.mlp_default * self.size("d_model")
        if what == "head_dim":
            return c.get(keys.get("head_dim", ""), None) or self.size("d_model") // self.size("heads")
        if what == "kv_heads":
            return c.get(keys.get("kv_heads", ""), None) or self.size("heads")
        return int(c[keys[what]])

    @property
    def d_model(self) -> int:
        return self.size("d_model")

    @property
    def n_heads(self) -> int:
        return self.size("heads")

    @property
    def mlp_hidden(self) -> int:
        return self.size("mlp")

    def hf_config(self):
        t = _transformers()
        return t.AutoConfig.for_model(self.config["model_type"]).__class__.from_dict(self.config)

    def _path(self, template: str, layer: int | None = None) -> str:
        if layer is not None:
            template = template.replace("{L}", f"{self.adapter.layers}.{layer}")
        return "hf." + template

    def _slots(self, slots: Slots, layer: int | None = None) -> list[tuple[str, int]]:
        """Concrete ``(parameter, axis)`` pairs; templates of parameters this config does not
        have (q/k/v biases with ``attention_bias: false``) are left out."""
        names = _parameter_names(json.dumps(self.config, sort_keys=True, default=str), self.arch)
        out = [(self._path(t, layer), axis) for t, axis in slots]
        return [(name, axis) for name, axis in out if name.split("#")[0] in names]

    # -- what the growth operators need -----------------------------------------------------
    def build(self) -> HFModel:
        t = _transformers()
        auto = t.AutoModelForCausalLM if self.adapter.task == "causal_lm" else t.AutoModelForSequenceClassification
        return HFModel(auto.from_config(self.hf_config()), self.adapter.task)

    def num_layers(self) -> int:
        return self.size("n_layers")

    def unit_groups(self) -> list[UnitGroup]:
        a = self.adapter
        producers, consumers = self._slots(a.stream.producers), self._slots(a.stream.consumers)
        norms = [self._path(t) for t in a.stream.norms]
        tied = bool(self.config.get("tie_word_embeddings", False))
        if a.lm_head is not None:
            head = (self._path(a.lm_head), 1)
            final = [self._path(t) for t in a.final_norm]
            if tied:  # the head is the embedding: it copies; the final norm carries the shares
                producers.append(head)
                consumers += [(t, 0) for t in final]
            else:
                consumers.append(head)
                norms += final
        heads, kv = self.size("heads"), self.size("kv_heads")
        head_dim, per_kv = self.size("head_dim"), heads // kv
        groups = []
        for i in range(self.num_layers()):
            producers += self._slots(a.stream_layer.producers, i)
            consumers += self._slots(a.stream_layer.consumers, i)
            norms += [self._path(t, i) for t in a.stream_layer.norms]
            heads_producers = self._slots(a.heads.producers, i)
            groups.append(UnitGroup(
                name=f"heads.{i}", size=kv,
                producers=tuple(heads_producers),
                consumers=tuple(self._slots(a.heads.consumers, i)),
                block=head_dim * per_kv, preserve="zero_out",
                blocks=tuple((name, head_dim) for name, _ in heads_producers if _is_kv(name)),
            ))
            groups.append(UnitGroup(
                name=f"mlp.{i}", size=self.size("mlp"),
                producers=tuple(self._slots(a.mlp.producers, i)),
                consumers=tuple(self._slots(a.mlp.consumers, i)),
                preserve="zero_out",
            ))
        groups.insert(0, UnitGroup("d_model", self.size("d_model"), tuple(producers), tuple(consumers),
                                   tuple(norms), normalized=True))
        for name, roles in a.follow_d_model.items():
            groups.append(UnitGroup(name, self.size("d_model"), tuple(self._slots(roles.producers)),
                                    tuple(self._slots(roles.consumers))))
        return groups

    def fused(self) -> dict[str, tuple[int, int]]:
        return {self._path(t, i): v for i in range(self.num_layers()) for t, v in self.adapter.fused.items()}

    def plan_fields(self) -> dict[str, tuple[str, int]]:
        per_kv = self.size("heads") // self.size("kv_heads")
        return {"d_model": ("d_model", 1), "n_heads": ("heads.", per_kv), "mlp_hidden": ("mlp.", 1)}

    def coupled(self, wanted: dict[str, int]) -> dict[str, int]:
        wanted = dict(wanted)
        d_old, d = self.size("d_model"), wanted["d_model"]
        if self.adapter.heads_follow_width:
            hd, h_old = self.size("head_dim"), self.size("heads")
            heads = {wanted[g] for g in wanted if g.startswith("heads.")}
            h = heads.pop() if len(heads) == 1 else h_old
            if (d != d_old and h not in (h_old, d // hd)) or d % hd:
                raise PlanError(f"plan: d_model {d} and n_heads {h} disagree; {self.arch} keeps head_dim = "
                                f"d_model / n_heads = {hd}, so d_model must be a multiple of {hd} equal to "
                                f"n_heads * {hd}")
            if d == d_old and h != h_old:
                d = h * hd
            wanted.update({g: d // hd for g in wanted if g.startswith("heads.")}, d_model=d)
        for name in self.adapter.follow_d_model:
            wanted[name] = d
        return wanted

    def example_input(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randint(0, self.size("vocab"), (n, self.block_size), generator=generator)

    def _with(self, **updates: Any) -> HFConfig:
        return HFConfig(self.arch, {**self.config, **updates}, self.tokenizer_dir, self.block_size)

    def widened(self, targets: dict[str, int]) -> HFConfig:
        keys, per_kv = self.adapter.sizes, self.size("heads") // self.size("kv_heads")
        kv = targets.get("heads.0", self.size("kv_heads"))
        updates = {keys["d_model"]: targets.get("d_model", self.size("d_model")),
                   keys["heads"]: kv * per_kv, keys["mlp"]: targets.get("mlp.0", self.size("mlp"))}
        if "kv_heads" in keys:
            updates[keys["kv_heads"]] = kv
        if "head_dim" in keys:
            updates[keys["head_dim"]] = self.size("head_dim")
        return self._with(**updates)

    def deepened(self, positions: list[int]) -> tuple[HFConfig, dict[str, str], list[str]]:
        old = self.num_layers()
        n, rename, new = renumbered_layers(self._path(self.adapter.layers), old, positions)
        updates: dict[str, Any] = {self.adapter.sizes["n_layers"]: n}
        for key, value in self.config.items():  # per-layer lists (Qwen2's layer_types)
            if isinstance(value, list) and len(value) == old and old:
                grown: list[Any] = []
                for i in range(old + 1):  # an inserted layer takes the type of the layer before it
                    grown += [value[min(max(i - 1, 0), old - 1)]] * positions.count(i)
                    grown += [value[i]] if i < old else []
                updates[key] = grown
        return self._with(**updates), rename, new

    def identity_zeros(self, layer: str) -> list[str]:
        return [f"{layer}.{t}" for t in self.adapter.identity]

    # -- saving in the ecosystem's format ------------------------------------------------------
    def dataset_ref(self, name: str) -> str:
        if name.startswith(DATA_PREFIX) or name in ("mnist1d", "digits", "text"):
            return name
        # absolute: Ray workers run in other directories
        return DATA_PREFIX + json.dumps({"path": str(Path(name).resolve()), "tokenizer": self.tokenizer_dir,
                                         "block_size": self.block_size, "task": self.adapter.task,
                                         "num_labels": self.num_labels}, sort_keys=True)

    @property
    def num_labels(self) -> int:
        """Classes of a classification head (transformers 5 keeps them as ``id2label``)."""
        return int(self.config.get("num_labels") or len(self.config.get("id2label") or {}) or 2)

    def write_weights(self, model: nn.Module, directory: Path) -> None:
        """``save_pretrained`` (config.json + model.safetensors) and the tokenizer files, so that
        ``AutoModelFor...from_pretrained(directory)`` loads the model without growsearch."""
        tmp = Path(tempfile.mkdtemp(dir=directory, prefix=".hf."))
        try:
            model.hf.save_pretrained(tmp, safe_serialization=True)
            if self.tokenizer_dir:
                for name in TOKENIZER_FILES:
                    if (Path(self.tokenizer_dir) / name).is_file():
                        shutil.copy(Path(self.tokenizer_dir) / name, tmp / name)
            for item in tmp.iterdir():
                os.replace(item, directory / item.name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def state_from_file(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {"hf." + k: v for k, v in state.items()}
        head, emb = "hf." + (self.adapter.lm_head or ""), "hf." + self.adapter.embedding
        if self.adapter.lm_head and head not in out and self.config.get("tie_word_embeddings"):
            out[head] = out[emb]
        return out


@functools.lru_cache(maxsize=64)
def _parameter_names(config_json: str, arch: str) -> frozenset[str]:
    """State-dict names of a config's model, built on the meta device (no memory, no init)."""
    with torch.device("meta"):
        model = HFConfig(arch, json.loads(config_json)).build()
    return frozenset(model.state_dict())


def _is_kv(name: str) -> bool:
    """Key/value projections have one head per unit; query projections ``heads/kv`` heads."""
    tail = name.rsplit(".", 2)[-2]
    return tail in ("k_proj", "v_proj", "key", "value") or name.endswith(("#1", "#2"))


from growsearch.data.core import TOKENIZED as DATA_PREFIX  # noqa: E402 - beside its one user


def load_hf_directory(path: str, block_size: int | None = None) -> tuple[HFModel, dict[str, Any]]:
    """Load a local Hugging Face model directory with transformers' own classes.

    Returns ``(model, spec)``. A missing directory or config, or an architecture without
    an adapter, is a one-line ConfigError naming the supported model types.
    """
    directory = Path(path)
    if not (directory / "config.json").is_file():
        raise ConfigError(f"hf: {path} is not a Hugging Face model directory (no config.json)")
    t = _transformers()
    try:
        config = t.AutoConfig.from_pretrained(str(directory), local_files_only=True)
    except (ValueError, OSError, KeyError) as exc:
        raise ConfigError(f"hf: {path}/config.json cannot be read ({str(exc).splitlines()[0][:120]})") from None
    arch = ARCHITECTURES.get(config.model_type)
    if arch is None:
        raise ConfigError(f"hf: {path} holds a {config.model_type!r} model; supported model types: {supported()}")
    auto = t.AutoModelForCausalLM if arch.task == "causal_lm" else t.AutoModelForSequenceClassification
    try:
        hf = auto.from_pretrained(str(directory), local_files_only=True, dtype=torch.float32)
    except (ValueError, OSError, RuntimeError) as exc:
        raise ConfigError(f"hf: cannot load the weights in {path} ({str(exc).splitlines()[0][:160]})") from None
    has_tokenizer = any((directory / f).is_file() for f in TOKENIZER_FILES[:1] + TOKENIZER_FILES[4:7])
    positions = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", 64)
    cfg = HFConfig(arch.name, hf.config.to_dict(), str(directory.resolve()) if has_tokenizer else None,
                   block_size or min(int(positions), 64))
    return HFModel(hf, arch.task), cfg.to_spec()
