"""Speed of each design's stream noise against ``torch.randn`` of the same size, on one CPU thread.

The issue's goal: every design's noise at most 1.5x ``torch.randn`` at batch 64 and noise shapes
1x32x32 and 4x64x64. For each design and shape we time
``design.stream(np.arange(64 // k), seed=0).slot(0, shape, offset=0)`` (float32, the stream's
default) and ``torch.randn(64, *shape)`` side by side in alternating pairs, so both see the same
machine load (the machine is shared), and report the median of the per-pair ratios with its
interquartile range. Each design is warmed up first; the first call (numba's compile, or its
load from the ``__pycache__`` cache) is reported separately.

    python benchmarks/noise_speed.py            # 15 pairs, writes benchmarks/results/noise_speed/
    python benchmarks/noise_speed.py --quick    # 5 pairs, a smoke test: noise_speed_quick
"""

from __future__ import annotations

import argparse
import time

import _common  # noqa: F401  (first: puts this checkout's uqdiff on the path)
import numpy as np
import pandas as pd
import torch
from _common import add_common_arguments, write_results

from uqdiff import Antithetic, Equicorrelated, KAntithetic, SobolRQMC
from uqdiff.designs import IID

BATCH = 64
SHAPES = ((1, 32, 32), (4, 64, 64))


def designs() -> list:
    return [IID(), Antithetic(), KAntithetic(8), Equicorrelated(4, 0.3), SobolRQMC(BATCH)]


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(design, shape: tuple[int, ...], pairs: int, seed: int) -> dict:
    """First-call time, then ``pairs`` alternating (design, randn) timings: ratio median and quartiles."""
    k = design.group_size
    noise = lambda: design.stream(np.arange(BATCH // k), seed=seed).slot(0, shape, offset=0)
    randn = lambda: torch.randn(BATCH, *shape)
    first = _seconds(noise)
    for _ in range(2):
        noise(), randn()
    t_noise, t_randn = [], []
    for _ in range(pairs):
        t_noise.append(_seconds(noise))
        t_randn.append(_seconds(randn))
    ratio = np.array(t_noise) / np.array(t_randn)
    q1, median, q3 = np.percentile(ratio, [25, 50, 75])
    return dict(
        design=design.name,
        shape="x".join(map(str, shape)),
        first_call_ms=1e3 * first,
        noise_ms=1e3 * float(np.median(t_noise)),
        randn_ms=1e3 * float(np.median(t_randn)),
        ratio=float(median),
        ratio_q1=float(q1),
        ratio_q3=float(q3),
    )


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, "noise_speed")
    parser.add_argument("--pairs", type=int, default=None, help="alternating timing pairs (default 15, --quick 5)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads or 1)
    pairs = args.pairs or (5 if args.quick else 15)
    rows = []
    for shape in SHAPES:
        for design in designs():
            row = measure(design, shape, pairs, args.seed)
            rows.append(row)
            print(
                f"{row['design']:32s} {row['shape']:8s} ratio {row['ratio']:6.2f} "
                f"[{row['ratio_q1']:.2f}, {row['ratio_q3']:.2f}]  first call {row['first_call_ms']:8.1f} ms"
            )
    lines = [
        "| design | shape | noise (ms) | torch.randn (ms) | ratio (median) | ratio IQR | first call (ms) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['design']} | 64x{r['shape']} | {r['noise_ms']:.3f} | {r['randn_ms']:.3f} | {r['ratio']:.2f} "
            f"| {r['ratio_q1']:.2f} - {r['ratio_q3']:.2f} | {r['first_call_ms']:.1f} |"
        )
    write_results(
        args.out,
        "noise_speed_quick" if args.quick else "noise_speed",
        title="Stream noise vs torch.randn, one CPU thread",
        intro=[
            f"Batch {BATCH}, float32; each ratio is the median over {pairs} alternating pairs of "
            "t(design slot) / t(torch.randn of the same size), after a warm-up. Goal: at most 1.5x.",
            "First call: the design's first slot in this process (numba compile, or its load from the cache).",
        ],
        table="\n".join(lines),
        data=dict(batch=BATCH, pairs=pairs, threads=torch.get_num_threads(), rows=rows),
        notes=["SobolRQMC's slot 0 is its Sobol' replicate (scrambled points and the inverse normal CDF)."],
    )
    return pd.DataFrame(rows)


if __name__ == "__main__":
    main()
