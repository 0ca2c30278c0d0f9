"""Build, briefly pretrain and save a tiny GPT-2 as a Hugging Face directory -- offline.

    python examples/hf_gpt2/make_base.py            # writes runs/hf_gpt2/{corpus.txt,base/}
    growsearch run examples/hf_gpt2/search.yaml --out runs/hf_gpt2/search

The text is Python's own documentation (``pydoc_data``, shipped with CPython); the
tokenizer is a byte-level BPE trained on it with ``tokenizers``; the model is
``GPT2LMHeadModel(GPT2Config(...))``. Pretraining uses growsearch's training loop; the
directory is written with ``save_pretrained``, so any transformers code can load it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pydoc_data.topics as topics
import torch

from growsearch.checkpoint import save_checkpoint
from growsearch.data import load_dataset
from growsearch.models import config_from_spec
from growsearch.models.hf import load_hf_directory
from growsearch.models.hf.tiny import make_tiny
from growsearch.train import TrainRecipe, evaluate, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/hf_gpt2", help="folder for corpus.txt and base/")
    parser.add_argument("--chars", type=int, default=60_000, help="characters of text to use")
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(2)
    start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = "\n\n".join(topics.topics[k] for k in sorted(topics.topics))[: args.chars]
    corpus = out / "corpus.txt"
    corpus.write_text(text)

    fresh = make_tiny(out / "untrained", "gpt2", text, vocab_size=512, block_size=64,
                      d_model=32, n_layers=2, n_heads=4, mlp_hidden=64)
    model, spec = load_hf_directory(str(fresh))
    dataset = config_from_spec(spec).dataset_ref(str(corpus))
    task = load_dataset(dataset)
    train(model, task, TrainRecipe(epochs=args.epochs, batch_size=16, lr=1e-2, warmup_steps=20), seed=0)
    test = evaluate(model, task.x_test, task.y_test)
    save_checkpoint(out / "base", model, spec, {"dataset": dataset, "test_loss": test["loss"],
                                                "test_accuracy": test["accuracy"]})
    print(f"saved {out / 'base'}: GPT-2, {sum(p.numel() for p in model.parameters())} params, "
          f"test loss {test['loss']:.3f}, {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    main()
