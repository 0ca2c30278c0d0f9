"""timm's VisionTransformer, as data: the residual stream, the heads and the MLP of every block.

The stream (``d_model``, timm's ``embed_dim``) is produced by the patch embedding, the
class token, the position embedding and every block's output projections, normalised by
the blocks' and the final LayerNorms (so it grows exactly only by whole multiples, or with
``masked``), and read by every block's fused q/k/v projection and MLP input and the head.
Heads keep ``head_dim = embed_dim / num_heads`` (as GPT-2 does), so heads follow the width.
Blocks are pre-norm: zeroing an inserted block's two output projections makes it the identity.
"""

from __future__ import annotations

from typing import Any

from growsearch.errors import PlanError
from growsearch.models.base import UnitGroup, renumbered_layers

LN = ("weight", "bias")


class ViTLayout:
    """Unit groups, widening and deepening of one timm ViT (``names``: its state-dict keys)."""

    def __init__(self, names: frozenset[str], heads: int) -> None:
        self.names, self.heads = names, heads  # timm's state dict does not hold the head count
        self.depth = sum(1 for i in range(10_000) if f"blocks.{i}.attn.qkv.weight" in names)

    def _have(self, *names: str) -> list[str]:
        return [n for n in names if n in self.names]

    def unit_groups(self, shapes: dict[str, tuple[int, ...]]) -> list[UnitGroup]:
        d, heads = shapes["patch_embed.proj.weight"][0], self.heads
        producers = [(n, 0) for n in self._have("patch_embed.proj.weight", "patch_embed.proj.bias")]
        producers += [(n, 2) for n in self._have("cls_token", "reg_token", "pos_embed")]
        norms = [f"norm.{k}" for k in LN if f"norm.{k}" in self.names]
        norms += [f"fc_norm.{k}" for k in LN if f"fc_norm.{k}" in self.names]
        consumers = [("head.weight", 1)]
        groups = []
        for i in range(self.depth):
            b = f"blocks.{i}"
            producers += [(n, 0) for n in self._have(f"{b}.attn.proj.weight", f"{b}.attn.proj.bias",
                                                     f"{b}.mlp.fc2.weight", f"{b}.mlp.fc2.bias",
                                                     f"{b}.ls1.gamma", f"{b}.ls2.gamma")]
            norms += self._have(*(f"{b}.{n}.{k}" for n in ("norm1", "norm2") for k in LN))
            consumers += [*((f"{b}.attn.qkv.weight#{part}", 1) for part in range(3)), (f"{b}.mlp.fc1.weight", 1)]
            qkv = [(f"{n}#{part}", 0) for n in self._have(f"{b}.attn.qkv.weight", f"{b}.attn.qkv.bias")
                   for part in range(3)]
            groups.append(UnitGroup(f"heads.{i}", heads, tuple(qkv), ((f"{b}.attn.proj.weight", 1),),
                                    block=d // heads, preserve="zero_out"))
            groups.append(UnitGroup(f"mlp.{i}", shapes[f"{b}.mlp.fc1.weight"][0],
                                    tuple((n, 0) for n in self._have(f"{b}.mlp.fc1.weight", f"{b}.mlp.fc1.bias")),
                                    ((f"{b}.mlp.fc2.weight", 1),), preserve="zero_out"))
        return [UnitGroup("d_model", d, tuple(producers), tuple(consumers), tuple(norms), normalized=True), *groups]

    def fused(self) -> dict[str, tuple[int, int]]:
        return {f"blocks.{i}.attn.qkv.{k}": (0, 3) for i in range(self.depth) for k in ("weight", "bias")
                if f"blocks.{i}.attn.qkv.{k}" in self.names}

    def coupled(self, wanted: dict[str, int], d_old: int) -> dict[str, int]:
        """timm keeps ``head_dim = embed_dim / num_heads``: heads follow d_model (and the reverse)."""
        wanted, hd = dict(wanted), d_old // self.heads
        d = wanted["d_model"]
        heads = {wanted[g] for g in wanted if g.startswith("heads.")}
        h = heads.pop() if len(heads) == 1 else self.heads
        if (d != d_old and h not in (self.heads, d // hd)) or d % hd:
            raise PlanError(f"plan: d_model {d} and n_heads {h} disagree; timm's ViT keeps head_dim = embed_dim / "
                            f"num_heads = {hd}, so d_model must be a multiple of {hd} equal to n_heads * {hd}")
        if d == d_old and h != self.heads:
            d = h * hd
        wanted.update({g: d // hd for g in wanted if g.startswith("heads.")}, d_model=d)
        mlps = {wanted[g] for g in wanted if g.startswith("mlp.")}
        if len(mlps) > 1:
            raise PlanError("plan: timm's ViT has one MLP size (mlp_ratio) for every block; allowed: one mlp_hidden")
        return wanted

    def widened_kwargs(self, sizes: dict[str, int]) -> dict[str, Any]:
        d, hidden = sizes["d_model"], sizes["mlp.0"]
        ratio = hidden / d
        if int(d * ratio) != hidden:  # timm computes int(embed_dim * mlp_ratio): nudge past float rounding
            ratio = (hidden + 0.5) / d
        return {"embed_dim": d, "num_heads": sizes["heads.0"], "mlp_ratio": ratio}

    def deepened(self, positions: list[int]) -> tuple[int, dict[str, str], list[str]]:
        return renumbered_layers("blocks", self.depth, positions)

    def identity_zeros(self, layer: str) -> list[str]:
        return [f"{layer}.{p}" for p in ("attn.proj.weight", "attn.proj.bias", "mlp.fc2.weight", "mlp.fc2.bias")]
