"""GPT-style causal decoder for character-level language modelling (pre-LayerNorm).

token + position embeddings -> blocks of ``x + attn(ln1(x))``, ``x + mlp(ln2(x))`` ->
final LayerNorm -> linear head. ``head_dim`` is part of the spec, so the number of heads
can grow without changing the width of the residual stream (``d_model``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from growsearch.errors import ConfigError
from growsearch.models.base import ModelConfig, UnitGroup, check_positive, renumbered_layers


@dataclass
class GPTConfig(ModelConfig):
    vocab_size: int
    block_size: int
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    head_dim: int | None = None
    mlp_hidden: int | None = None

    family = "gpt"

    def validate(self) -> None:
        check_positive(self, "vocab_size", "block_size", "d_model", "n_heads", "head_dim", "mlp_hidden")
        if self.n_layers < 0:
            raise ConfigError(f"spec.n_layers: got {self.n_layers}; allowed: >= 0")
        if self.head_dim is None:
            if self.d_model % self.n_heads:
                raise ConfigError(
                    f"spec.n_heads: {self.n_heads} does not divide d_model={self.d_model}; "
                    "allowed: a divisor of d_model, or give head_dim explicitly"
                )
            self.head_dim = self.d_model // self.n_heads
        if self.mlp_hidden is None:
            self.mlp_hidden = 4 * self.d_model

    def build(self) -> GPT:
        return GPT(self)

    def num_layers(self) -> int:
        return self.n_layers

    def unit_groups(self) -> list[UnitGroup]:
        blocks = [f"blocks.{i}" for i in range(self.n_layers)]
        stream_producers = [("tok_emb.weight", 1), ("pos_emb.weight", 1)]
        stream_consumers = [("lm_head.weight", 1)]
        norms = ["ln_f.weight", "ln_f.bias"]
        groups = []
        for i, p in enumerate(blocks):
            stream_producers += [(f"{p}.attn.o.weight", 0), (f"{p}.attn.o.bias", 0),
                                 (f"{p}.mlp.proj.weight", 0), (f"{p}.mlp.proj.bias", 0)]
            stream_consumers += [(f"{p}.attn.{n}.weight", 1) for n in "qkv"]
            stream_consumers.append((f"{p}.mlp.fc.weight", 1))
            norms += [f"{p}.{ln}.{k}" for ln in ("ln1", "ln2") for k in ("weight", "bias")]
            groups.append(UnitGroup(
                name=f"heads.{i}",
                size=self.n_heads,
                producers=tuple((f"{p}.attn.{n}.{k}", 0) for n in "qkv" for k in ("weight", "bias")),
                consumers=((f"{p}.attn.o.weight", 1),),
                block=self.head_dim,
                preserve="zero_out",
            ))
            groups.append(UnitGroup(
                name=f"mlp.{i}",
                size=self.mlp_hidden,
                producers=((f"{p}.mlp.fc.weight", 0), (f"{p}.mlp.fc.bias", 0)),
                consumers=((f"{p}.mlp.proj.weight", 1),),
                preserve="zero_out",
            ))
        groups.insert(0, UnitGroup(
            name="d_model",
            size=self.d_model,
            producers=tuple(stream_producers),
            consumers=tuple(stream_consumers),
            norms=tuple(norms),
            normalized=True,
        ))
        return groups

    def plan_fields(self) -> dict[str, tuple[str, int]]:
        return {"d_model": ("d_model", 1), "n_heads": ("heads.", 1), "mlp_hidden": ("mlp.", 1)}

    def example_input(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randint(0, self.vocab_size, (n, self.block_size), generator=generator)

    def widened(self, targets: dict[str, int]) -> GPTConfig:
        # every block has the same number of heads and MLP units, so block 0 speaks for all
        return GPTConfig(self.vocab_size, self.block_size,
                         d_model=targets.get("d_model", self.d_model), n_layers=self.n_layers,
                         n_heads=targets.get("heads.0", self.n_heads), head_dim=self.head_dim,
                         mlp_hidden=targets.get("mlp.0", self.mlp_hidden))

    def deepened(self, positions: list[int]) -> tuple[GPTConfig, dict[str, str], list[str]]:
        n, rename, new = renumbered_layers("blocks", self.n_layers, positions)
        cfg = GPTConfig(self.vocab_size, self.block_size, self.d_model, n, self.n_heads,
                        self.head_dim, self.mlp_hidden)
        return cfg, rename, new

    def identity_zeros(self, layer: str) -> list[str]:
        return [f"{layer}.{m}.{k}" for m in ("attn.o", "mlp.proj") for k in ("weight", "bias")]


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        inner = cfg.n_heads * cfg.head_dim
        self.n_heads, self.head_dim = cfg.n_heads, cfg.head_dim
        self.q = nn.Linear(cfg.d_model, inner)
        self.k = nn.Linear(cfg.d_model, inner)
        self.v = nn.Linear(cfg.d_model, inner)
        self.o = nn.Linear(inner, cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape

        def heads(y: torch.Tensor) -> torch.Tensor:
            return y.view(b, t, self.n_heads, self.head_dim).transpose(1, 2)

        y = F.scaled_dot_product_attention(heads(self.q(x)), heads(self.k(x)), heads(self.v(x)),
                                           is_causal=True)
        return self.o(y.transpose(1, 2).reshape(b, t, self.n_heads * self.head_dim))


class MLPBlock(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(cfg.d_model, cfg.mlp_hidden)
        self.act = nn.GELU()
        self.proj = nn.Linear(cfg.mlp_hidden, cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.act(self.fc(x)))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = MLPBlock(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.config = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos_emb = nn.Embedding(cfg.block_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        for module in self.modules():  # GPT-2 style small init keeps early training stable
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.shape[1]
        x = self.tok_emb(idx) + self.pos_emb(torch.arange(t, device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))
