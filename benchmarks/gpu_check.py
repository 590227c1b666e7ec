"""GPU checks of capture and streams: CPU vs CUDA noise, a captured sampler timed at batch 64 on the GPU.

1. Noise: the same stream slots made on the CPU and on CUDA for every stream design (MC,
   antithetic, K-antithetic, equicorrelated, Sobol' RQMC): Philox words bit for bit, normals
   (float64 and float32) with the share of bit-identical values and the largest difference.
2. Time: the DDPM loop of ``capture_overhead.py`` (Fashion-MNIST UNet, diffusers' DDPMScheduler
   drawing its own noise) on the GPU at batch 64, called directly and captured, alternating.
3. Repeats: a captured estimate on the GPU twice at one seed (bit-identical), and the repeat
   check's differences on the GPU (non-deterministic kernels show here).

Without CUDA, parts 2 and 3 run on the CPU with a note and part 1 is skipped, so the script is
tested everywhere; ``benchmarks/gpu_suite.sh`` runs it on a GPU.

    python benchmarks/gpu_check.py --out benchmarks/results/gpu
    python benchmarks/gpu_check.py --quick --out /tmp/gpu
"""

from __future__ import annotations

import argparse
import time

import _common  # noqa: F401  (first: puts this checkout's uqdiff on the path)
import numpy as np
import pandas as pd
import torch
from _common import add_common_arguments, device_name, write_results

from uqdiff import Antithetic, Equicorrelated, KAntithetic, SobolRQMC, estimate
from uqdiff.designs import IID
from uqdiff.designs.streams import philox4x32, stream_key
from uqdiff.estimators.results import markdown_table
from uqdiff.estimators.settings import RunSettings
from uqdiff.samplers import Captured, check_repeatable


def noise_equality(shape: tuple[int, ...], groups: int, slots: int, seed: int) -> pd.DataFrame:
    """CPU vs CUDA slots of every stream design."""
    rows = []
    counters = torch.randint(0, 2**32, (4, 1 << 20), dtype=torch.int64, generator=torch.Generator().manual_seed(seed))
    words_equal = torch.equal(
        philox4x32(counters, stream_key(seed)), philox4x32(counters.cuda(), stream_key(seed)).cpu()
    )
    rows.append(
        {
            "design": "philox words",
            "values": counters.numel(),
            "bit_identical": float(words_equal),
            "max_abs_diff": 0.0 if words_equal else float("nan"),
        }
    )
    for design in (IID(), Antithetic(), KAntithetic(8), Equicorrelated(4, 0.5), SobolRQMC(16)):
        stream = design.stream(np.arange(groups), seed=seed)
        for dtype in (torch.float64, torch.float32):
            same, total, worst = 0, 0, 0.0
            offset = 0
            for s in range(slots):
                a = stream.slot(s, shape, offset=offset, dtype=dtype)
                b = stream.slot(s, shape, offset=offset, device="cuda", dtype=dtype).cpu()
                offset += int(np.prod(shape))
                same += int((a == b).sum())
                total += a.numel()
                worst = max(worst, float((a.double() - b.double()).abs().max()))
            rows.append(
                {
                    "design": f"{design.name} {str(dtype).replace('torch.', '')}",
                    "values": total,
                    "bit_identical": same / total,
                    "max_abs_diff": worst,
                }
            )
    return pd.DataFrame(rows)


def timing(device: str, steps: int, reps: int, batch: int, seed: int) -> tuple[pd.DataFrame, dict]:
    from uqdiff.models.fashion import NULL_CLASS, load_fashion_ddpm

    unet, scheduler = load_fashion_ddpm()
    unet = unet.to(device).eval()
    scheduler.set_timesteps(steps)

    @torch.no_grad()
    def loop(n):
        x = torch.randn(n, 1, 32, 32, device=device)
        labels = torch.full((n,), NULL_CLASS, dtype=torch.long, device=device)
        for t in scheduler.timesteps:
            eps = unet(x, t, class_labels=labels).sample
            x = scheduler.step(eps, t, x).prev_sample
        return x

    captured = Captured(loop)
    captured.trace()
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def run(name, rep):
        sync()
        t0 = time.perf_counter()
        if name == "direct":
            torch.manual_seed(seed + rep)
            loop(batch)
        else:
            captured(IID().stream(np.arange(rep * batch, (rep + 1) * batch), seed=seed))
        sync()
        return time.perf_counter() - t0

    run("direct", 0), run("captured", 0)
    rows = []
    for rep in range(reps):
        order = ["direct", "captured"] if rep % 2 == 0 else ["captured", "direct"]
        times = {name: run(name, rep) for name in order}
        rows.append({"repetition": rep, "first": order[0], **times, "ratio": times["captured"] / times["direct"]})
    frame = pd.DataFrame(rows)
    stat = {"mean": lambda x: x.mean(dim=(1, 2, 3))}
    kw = dict(budget=2 * batch, design="antithetic", seed=seed, run=RunSettings(batch_size=batch))
    first, again = estimate(captured, stat, **kw), estimate(captured, stat, **kw)
    check = check_repeatable(captured, budget=min(batch, 16), seed=seed)
    summary = {
        "device": device_name(device),
        "steps": steps,
        "batch": batch,
        "median_ratio": float(frame.ratio.median()),
        "median_direct_s": float(frame.direct.median()),
        "median_captured_s": float(frame.captured.median()),
        "estimate_repeats_bit_identical": first.to_dict()["results"] == again.to_dict()["results"],
        "repeat_check": check.to_dict(),
    }
    return frame, summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser, "gpu")
    parser.add_argument("--steps", type=int, default=50, help="DDPM steps of the timed loop (default 50)")
    parser.add_argument("--reps", type=int, default=7, help="timed repetitions (default 7)")
    parser.add_argument("--batch", type=int, default=64, help="batch size (default 64)")
    parser.add_argument(
        "--tf32",
        action="store_true",
        help="keep cuDNN's TF32 convolutions (PyTorch's default); without it they are turned off, since on an "
        "H200 they made the float32 UNet loop's output depend on the batch by 0.0059 and the repeat check refused it",
    )
    args = parser.parse_args(argv)
    torch.backends.cudnn.allow_tf32 = args.tf32
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available()
    if args.quick:
        args.steps, args.reps, args.batch = 1, 1, 2
    device = "cuda" if cuda else "cpu"
    parts, data, notes = [], {"cuda": cuda}, []
    if cuda:
        shape = (3, 16, 16) if args.quick else (3, 64, 64)
        noise = noise_equality(shape, 4 if args.quick else 16, 2 if args.quick else 8, args.seed)
        parts += [f"CPU vs CUDA noise, slots of shape {shape}:", "", markdown_table(noise), ""]
        data["noise"] = noise.to_dict(orient="records")
    else:
        notes.append("no CUDA device: the CPU vs CUDA noise comparison was skipped; timing and repeats ran on the CPU")
    frame, summary = timing(device, args.steps, args.reps, args.batch, args.seed)
    parts += [
        f"Captured vs direct, {args.steps}-step DDPM loop (Fashion-MNIST UNet) on {summary['device']}, batch "
        f"{args.batch}: median ratio {summary['median_ratio']:.3f} (direct {summary['median_direct_s']:.3f} s, "
        f"captured {summary['median_captured_s']:.3f} s). Same seed twice: bit-identical = "
        f"{summary['estimate_repeats_bit_identical']}. Repeat check: {summary['repeat_check']['repeat_difference']:.3g} "
        f"(repeat), {summary['repeat_check']['batch_difference']:.3g} (batch), explained variance "
        f"{summary['repeat_check']['explained_variance']:.4f}.",
        "",
        markdown_table(frame.round(4)),
    ]
    data.update({"time": summary, "time_rows": frame.to_dict(orient="records")})
    print("\n".join(parts))
    write_results(
        args.out,
        "gpu_check_quick" if args.quick else "gpu_check",
        title="GPU checks: CPU vs CUDA noise, capture timing, repeats",
        intro=[f"Device: {device_name(device)}; TF32 convolutions and matmuls {'on' if args.tf32 else 'off'}."],
        table="\n".join(parts),
        data=data,
        notes=notes,
    )
    return frame


if __name__ == "__main__":
    main()
