"""The Llama layout (also Mistral, Qwen2): RMSNorm, rotary positions (nothing to grow),
grouped-query attention (a unit is one key/value head with the query heads it serves),
gated SiLU MLP, an untied output head unless the config ties it."""

from growsearch.models.hf.base import Architecture, Roles, register

LLAMA = register(Architecture(
    name="llama", model_types=("llama", "mistral", "qwen2"), task="causal_lm", layers="model.layers",
    sizes={"d_model": "hidden_size", "heads": "num_attention_heads", "kv_heads": "num_key_value_heads",
           "head_dim": "head_dim", "mlp": "intermediate_size", "n_layers": "num_hidden_layers",
           "vocab": "vocab_size"},
    stream=Roles(producers=(("model.embed_tokens.weight", 1),)),
    stream_layer=Roles(
        producers=(("{L}.self_attn.o_proj.weight", 0), ("{L}.mlp.down_proj.weight", 0)),
        consumers=tuple((f"{{L}}.{m}.weight", 1) for m in ("self_attn.q_proj", "self_attn.k_proj",
                                                         "self_attn.v_proj", "mlp.gate_proj", "mlp.up_proj")),
        norms=("{L}.input_layernorm.weight", "{L}.post_attention_layernorm.weight")),
    heads=Roles(producers=tuple((f"{{L}}.self_attn.{m}_proj.{k}", 0) for m in "qkv" for k in ("weight", "bias")),
                consumers=(("{L}.self_attn.o_proj.weight", 1),)),
    mlp=Roles(producers=(("{L}.mlp.gate_proj.weight", 0), ("{L}.mlp.up_proj.weight", 0)),
              consumers=(("{L}.mlp.down_proj.weight", 1),)),
    identity=("self_attn.o_proj.weight", "mlp.down_proj.weight"),
    embedding="model.embed_tokens.weight", lm_head="lm_head.weight", final_norm=("model.norm.weight",),
))
