"""Train the class-conditional Fashion-MNIST DDPM that uqdiff ships (diffusers UNet2DModel).

28x28 images are padded to 32x32 and scaled to [-1, 1]; epsilon prediction,
1000 training timesteps, linear betas. Label 10 is the "no class" label
(dropped 10% of the time) so classifier-free guidance works. The EMA weights
are saved with ``save_pretrained`` (safetensors) under ``--out``, together
with the scheduler config and a metrics JSON holding the held-out loss, every
``--save-every`` steps, so an interrupted run still leaves a usable model.

    python training/train_fashion_ddpm.py --steps 12000 --threads 1
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from uqdiff.models.fashion_mnist import load_fashion_mnist

NULL_CLASS = 10


def build_unet():
    from diffusers import UNet2DModel

    return UNet2DModel(
        sample_size=32,
        in_channels=1,
        out_channels=1,
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),  # attention only at 8x8: CPU-friendly
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
        attention_head_dim=32,
        num_class_embeds=11,
    )


def to_model_space(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float (N, 1, 32, 32) in [-1, 1], padded with the background value."""
    x = torch.from_numpy(np.array(images)).float().div(127.5).sub(1.0)[:, None]
    return F.pad(x, (2, 2, 2, 2), value=-1.0)


@torch.no_grad()
def heldout_loss(model, scheduler, x, y, *, seed: int = 0, batch: int = 500) -> float:
    """Mean epsilon-MSE on held-out images with fixed timesteps and noise (comparable across checkpoints)."""
    g = torch.Generator().manual_seed(seed)
    total = 0.0
    for lo in range(0, len(x), batch):
        xb, yb = x[lo : lo + batch], y[lo : lo + batch]
        t = torch.randint(0, scheduler.config.num_train_timesteps, (len(xb),), generator=g)
        eps = torch.randn(xb.shape, generator=g)
        pred = model(scheduler.add_noise(xb, eps, t), t, class_labels=yb).sample
        total += F.mse_loss(pred, eps, reduction="sum").item()
    return total / x.numel()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=12000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument(
        "--schedule",
        choices=["constant", "cosine"],
        default="constant",
        help="learning rate after warm-up; constant suits runs that may be cut short (EMA smooths)",
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-every", type=int, default=500)
    p.add_argument("--heldout", type=int, default=2000, help="test images used for the held-out loss")
    p.add_argument("--out", type=Path, default=Path("models/fashion_mnist_ddpm"))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()

    from diffusers import DDPMScheduler

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    xtr, ytr = load_fashion_mnist("train")
    xte, yte = load_fashion_mnist("test")
    x_train, y_train = to_model_space(xtr).to(device), torch.from_numpy(ytr).to(device)
    x_test, y_test = to_model_space(xte[: args.heldout]).to(device), torch.from_numpy(yte[: args.heldout]).to(device)

    model = build_unet().to(device)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", prediction_type="epsilon")
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    warmup = 500

    def lr_factor(s: int) -> float:
        decay = 0.5 * (1 + math.cos(math.pi * min(s, args.steps) / args.steps)) if args.schedule == "cosine" else 1.0
        return min(1.0, (s + 1) / warmup) * decay

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"UNet2DModel with {n_params / 1e6:.2f}M parameters on {device}, {args.threads} thread(s)")
    gen = torch.Generator(device="cpu").manual_seed(args.seed)
    history, start, running = [], time.time(), None
    for step in range(1, args.steps + 1):
        idx = torch.randint(0, len(x_train), (args.batch_size,), generator=gen).to(device)
        x0, y = x_train[idx], y_train[idx].clone()
        y[torch.rand(len(y), generator=gen).to(device) < 0.1] = NULL_CLASS
        t = torch.randint(0, 1000, (len(x0),), generator=gen).to(device)
        eps = torch.randn(x0.shape, generator=gen).to(device)
        loss = F.mse_loss(model(scheduler.add_noise(x0, eps, t), t, class_labels=y).sample, eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.lerp_(pm, 1 - decay)
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if step % 100 == 0:
            print(f"step {step} loss {running:.4f} ({time.time() - start:.0f}s)", flush=True)
        if step % args.save_every == 0 or step == args.steps:
            held = heldout_loss(ema, scheduler, x_test, y_test)
            history.append(
                {
                    "step": step,
                    "train_loss_ema": running,
                    "heldout_loss": held,
                    "seconds": round(time.time() - start, 1),
                }
            )
            print(f"step {step} held-out loss {held:.4f}", flush=True)
            ema.save_pretrained(args.out / "unet", safe_serialization=True)
            scheduler.save_pretrained(args.out / "scheduler")
            metrics = {
                "parameters": n_params,
                "steps_done": step,
                "steps_planned": args.steps,
                "batch_size": args.batch_size,
                "lr": args.lr,
                "schedule": args.schedule,
                "ema": args.ema,
                "device": str(device),
                "threads": args.threads,
                "heldout_images": len(x_test),
                "heldout_loss": held,
                "history": history,
                "null_class": NULL_CLASS,
                "image_padding": "28x28 padded to 32x32 with -1",
            }
            (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
