"""BERT with a sequence-classification head: post-LayerNorm blocks (so an inserted layer is
close to, not exactly, the identity), heads tied to the width, a tanh pooler sized like
the stream."""

from growsearch.models.hf.base import Architecture, Roles, register

_EMB = "bert.embeddings."
BERT = register(Architecture(
    name="bert", model_types=("bert",), task="sequence_classification", layers="bert.encoder.layer",
    sizes={"d_model": "hidden_size", "heads": "num_attention_heads", "mlp": "intermediate_size",
           "n_layers": "num_hidden_layers", "vocab": "vocab_size"},
    stream=Roles(producers=tuple((f"{_EMB}{e}_embeddings.weight", 1) for e in ("word", "position", "token_type")),
                 consumers=(("bert.pooler.dense.weight", 1),),
                 norms=(f"{_EMB}LayerNorm.weight", f"{_EMB}LayerNorm.bias")),
    stream_layer=Roles(
        producers=tuple((f"{{L}}.{m}.dense.{k}", 0) for m in ("attention.output", "output")
                        for k in ("weight", "bias")),
        consumers=tuple((f"{{L}}.{m}.weight", 1) for m in ("attention.self.query", "attention.self.key",
                                                         "attention.self.value", "intermediate.dense")),
        norms=tuple(f"{{L}}.{m}.LayerNorm.{k}" for m in ("attention.output", "output") for k in ("weight", "bias"))),
    heads=Roles(producers=tuple((f"{{L}}.attention.self.{m}.{k}", 0) for m in ("query", "key", "value")
                                for k in ("weight", "bias")),
                consumers=(("{L}.attention.output.dense.weight", 1),)),
    mlp=Roles(producers=(("{L}.intermediate.dense.weight", 0), ("{L}.intermediate.dense.bias", 0)),
              consumers=(("{L}.output.dense.weight", 1),)),
    identity=tuple(f"{m}.dense.{k}" for m in ("attention.output", "output") for k in ("weight", "bias")),
    embedding=f"{_EMB}word_embeddings.weight",
    heads_follow_width=True, post_norm=True,
    follow_d_model={"pooler": Roles(producers=(("bert.pooler.dense.weight", 0), ("bert.pooler.dense.bias", 0)),
                                    consumers=(("classifier.weight", 1),))},
))
