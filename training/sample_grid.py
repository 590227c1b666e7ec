"""Sample grid and sample-quality check of the Fashion-MNIST DDPM.

For every class, draws ``--per-class`` images with 50-step DDIM, saves a grid
PNG (rows = classes), and reports how often the committed classifier assigns
each sample to its intended class (written next to the model's metrics).

    python training/sample_grid.py --per-class 8
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from PIL import Image

from uqdiff import IID
from uqdiff.models.classifier import load_fashion_classifier
from uqdiff.models.fashion import FASHION_DDPM_DIR, FashionMNISTGenerator
from uqdiff.models.fashion_mnist import FASHION_MNIST_CLASSES


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--per-class", type=int, default=8)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--guidance", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    classifier = load_fashion_classifier()
    rows, hits = [], []
    for label in range(10):
        g = FashionMNISTGenerator(label, num_inference_steps=args.steps, guidance_scale=args.guidance, device="cpu")
        noise = IID().groups(np.arange(args.per_class), 1024, seed=[args.seed, label]).reshape(-1, 1, 32, 32)
        x = g(noise)
        hits.append((classifier(x).argmax(-1) == label).float().mean().item())
        rows.append(((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[:, 0].numpy())
    grid = np.concatenate([np.concatenate(list(r), axis=1) for r in rows], axis=0)
    out = FASHION_DDPM_DIR / "sample_grid.png"
    Image.fromarray(grid).resize((grid.shape[1] * 3, grid.shape[0] * 3), Image.NEAREST).save(out)
    report = {
        "per_class": args.per_class,
        "ddim_steps": args.steps,
        "guidance_scale": args.guidance,
        "classifier_agreement": dict(zip(FASHION_MNIST_CLASSES, hits)),
        "mean_agreement": float(np.mean(hits)),
    }
    (FASHION_DDPM_DIR / "sample_quality.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
