"""GPT-2: learned positions, pre-LayerNorm blocks, fused q/k/v in Conv1D layout
(weights are ``[in, out]``), output head tied to the token embedding."""

from growsearch.models.hf.base import Architecture, Roles, register

GPT2 = register(Architecture(
    name="gpt2", model_types=("gpt2",), task="causal_lm", layers="transformer.h",
    sizes={"d_model": "n_embd", "heads": "n_head", "mlp": "n_inner", "n_layers": "n_layer",
           "vocab": "vocab_size"},
    stream=Roles(producers=(("transformer.wte.weight", 1), ("transformer.wpe.weight", 1))),
    stream_layer=Roles(
        producers=(("{L}.attn.c_proj.weight", 1), ("{L}.attn.c_proj.bias", 0),
                   ("{L}.mlp.c_proj.weight", 1), ("{L}.mlp.c_proj.bias", 0)),
        consumers=(*((f"{{L}}.attn.c_attn.weight#{i}", 0) for i in range(3)), ("{L}.mlp.c_fc.weight", 0)),
        norms=("{L}.ln_1.weight", "{L}.ln_1.bias", "{L}.ln_2.weight", "{L}.ln_2.bias")),
    heads=Roles(producers=tuple((f"{{L}}.attn.c_attn.{k}#{i}", 1 if k == "weight" else 0)
                                for k in ("weight", "bias") for i in range(3)),
                consumers=(("{L}.attn.c_proj.weight", 0),)),
    mlp=Roles(producers=(("{L}.mlp.c_fc.weight", 1), ("{L}.mlp.c_fc.bias", 0)),
              consumers=(("{L}.mlp.c_proj.weight", 0),)),
    identity=("attn.c_proj.weight", "attn.c_proj.bias", "mlp.c_proj.weight", "mlp.c_proj.bias"),
    embedding="transformer.wte.weight", lm_head="lm_head.weight",
    final_norm=("transformer.ln_f.weight", "transformer.ln_f.bias"),
    fused={"{L}.attn.c_attn.weight": (1, 3), "{L}.attn.c_attn.bias": (0, 3)},
    heads_follow_width=True,
))
