"""Train the small Fashion-MNIST classifier shipped in uqdiff/assets (safetensors + metrics JSON).

python training/train_fashion_classifier.py --epochs 8 --threads 1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from uqdiff.models.classifier import CLASSIFIER_FILE, FashionClassifier
from uqdiff.models.fashion_mnist import load_fashion_mnist


def to_input(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(images)).float().div(127.5).sub(1.0)[:, None]


@torch.no_grad()
def accuracy(model, x, y) -> float:
    model.eval()
    pred = torch.cat([model(x[i : i + 2000]).argmax(-1) for i in range(0, len(x), 2000)])
    return float((pred == y).float().mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=CLASSIFIER_FILE)
    args = p.parse_args()
    from safetensors.torch import save_file

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    xtr, ytr = load_fashion_mnist("train")
    xte, yte = load_fashion_mnist("test")
    x, y = to_input(xtr), torch.from_numpy(ytr)
    xt, yt = to_input(xte), torch.from_numpy(yte)
    model = FashionClassifier()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    steps = args.epochs * (len(x) // args.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps)
    g = torch.Generator().manual_seed(args.seed)
    start = time.time()
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(x), generator=g)
        for i in range(len(x) // args.batch_size):
            idx = perm[i * args.batch_size : (i + 1) * args.batch_size]
            xb = x[idx]
            flip = torch.rand(len(xb), generator=g) < 0.5  # horizontal flips: garments are left-right symmetric
            xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
            loss = F.cross_entropy(model(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        print(
            f"epoch {epoch + 1}: test accuracy {accuracy(model, xt, yt):.4f} ({time.time() - start:.0f}s)", flush=True
        )
    acc = accuracy(model, xt, yt)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(args.out))
    n_params = sum(p.numel() for p in model.parameters())
    metrics = {
        "test_accuracy": acc,
        "test_images": len(xt),
        "parameters": n_params,
        "epochs": args.epochs,
        "file_bytes": args.out.stat().st_size,
        "seconds": round(time.time() - start, 1),
    }
    args.out.with_suffix(".json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps(metrics))


if __name__ == "__main__":
    main()
