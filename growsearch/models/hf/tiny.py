"""Make a tiny Hugging Face model directory offline: a byte-level BPE tokenizer trained on
the given text with ``tokenizers``, and a randomly initialised GPT-2, Llama or BERT
classifier of the given size. Used by the hf_gpt2 example and the tests; handy to try
growsearch on the HF path without downloading anything."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from growsearch.errors import ConfigError

SIZES = {"d_model": 32, "n_layers": 2, "n_heads": 4, "kv_heads": 2, "mlp_hidden": 64}


def train_tokenizer(text: str, vocab_size: int = 300):
    """A byte-level BPE tokenizer (pad ``<pad>`` = 0, end of text ``<eos>`` = 1)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([text], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>")


def make_tiny(directory: str | Path, arch: str, text: str, *, vocab_size: int = 300, block_size: int = 32,
              num_labels: int = 2, seed: int = 0, **sizes: Any) -> Path:
    """Write a tiny ``arch`` model (gpt2, llama, bert) and its tokenizer to ``directory``."""
    from growsearch.models.hf.base import _transformers

    transformers = _transformers()
    s = {**SIZES, **sizes}
    tokenizer = train_tokenizer(text, vocab_size)
    v = len(tokenizer)
    common = {"vocab_size": v, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 1}
    if arch == "gpt2":
        cfg = transformers.GPT2Config(n_positions=block_size, n_embd=s["d_model"], n_layer=s["n_layers"],
                                      n_head=s["n_heads"], n_inner=s["mlp_hidden"], **common)
        cls = transformers.GPT2LMHeadModel
    elif arch == "llama":
        cfg = transformers.LlamaConfig(hidden_size=s["d_model"], intermediate_size=s["mlp_hidden"],
                                       num_hidden_layers=s["n_layers"], num_attention_heads=s["n_heads"],
                                       num_key_value_heads=s["kv_heads"], head_dim=s["d_model"] // s["n_heads"],
                                       max_position_embeddings=block_size, **common)
        cls = transformers.LlamaForCausalLM
    elif arch == "bert":
        cfg = transformers.BertConfig(hidden_size=s["d_model"], num_hidden_layers=s["n_layers"],
                                      num_attention_heads=s["n_heads"], intermediate_size=s["mlp_hidden"],
                                      max_position_embeddings=block_size, num_labels=num_labels, **common)
        cls = transformers.BertForSequenceClassification
    else:
        raise ConfigError(f"arch: got {arch!r}; allowed: gpt2, llama, bert")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = cls(cfg)
    directory = Path(directory)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
