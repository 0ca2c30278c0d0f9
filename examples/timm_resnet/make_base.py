"""Pretrain a small timm ResNet on an offline image set and save it as a timm base -- offline.

    python examples/timm_resnet/make_base.py        # writes runs/timm_resnet/{digits16.npz,base/}
    growsearch run examples/timm_resnet/search.yaml --out runs/timm_resnet/search

The images are scikit-learn's handwritten digits (shipped with the package, 8x8) upsampled to
16x16, one channel, saved as an ``.npz`` that growsearch reads as user data. The model is
``timm.create_model("resnet18", layers=[1, 1, 1, 1], channels=[16, 32, 64, 128], in_chans=1,
num_classes=10)``, pretrained with growsearch's training loop. ``base/`` holds
``model.safetensors`` and ``timm.json`` (name + kwargs): timm alone rebuilds it, and
``timm:runs/timm_resnet/base`` names it as a growsearch base.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from growsearch.checkpoint import save_checkpoint
from growsearch.data import load_dataset
from growsearch.models.vision import VisionConfig
from growsearch.train import TrainRecipe, evaluate, train

KWARGS = {"layers": [1, 1, 1, 1], "channels": [16, 32, 64, 128], "in_chans": 1, "num_classes": 10}


def digits_images(path: Path, size: int) -> None:
    """scikit-learn's digits as (N, 1, size, size) images in an .npz (train/test as growsearch splits them)."""
    task = load_dataset("digits")

    def up(x: torch.Tensor) -> np.ndarray:
        return torch.nn.functional.interpolate(x[:, None], size=(size, size), mode="bilinear").numpy()

    np.savez(path, x_train=up(task.x_train), y_train=task.y_train.numpy(), x_test=up(task.x_test),
             y_test=task.y_test.numpy())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/timm_resnet", help="folder for digits16.npz and base/")
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(2)
    start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = out / "digits16.npz"
    digits_images(data, 16)
    cfg = VisionConfig("timm", "resnet18", KWARGS, [1, 16, 16])
    torch.manual_seed(0)
    model = cfg.build()
    task = load_dataset(str(data))
    train(model, task, TrainRecipe(epochs=args.epochs, batch_size=64, lr=3e-3), seed=0)
    test = evaluate(model, task.x_test, task.y_test)
    save_checkpoint(out / "base", model, cfg.to_spec(), {"dataset": str(data.resolve()), "test_loss": test["loss"],
                                                         "test_accuracy": test["accuracy"]})
    print(f"saved {out / 'base'}: timm resnet18 {KWARGS}, {sum(p.numel() for p in model.parameters())} params, "
          f"test accuracy {test['accuracy']:.3f}, {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    main()
