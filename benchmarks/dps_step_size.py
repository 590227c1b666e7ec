"""Why DPS's default step size is scaled by sqrt(1000 / steps).

    python benchmarks/dps_step_size.py
    python benchmarks/dps_step_size.py --quick   # 4 steps, 2 samples per row: dps_step_size_quick (seconds)

DPS's per-task step sizes (0.5 inpainting, 0.3 super-resolution and blur) are
for 1000 steps. On the Fashion-MNIST DDPM at 50 steps this compares them,
unscaled, with uqdiff's default (times sqrt(1000 / 50)): PSNR of the naive
reconstruction, of each sample (mean over 8) and of the 8-sample posterior mean,
for the first ground truth of inverse_solvers.py. Writes
benchmarks/results/inverse/dps_step_size.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import math

import _common  # noqa: F401  (first: puts this checkout's uqdiff on the path)
import pandas as pd
import torch
from _common import add_common_arguments, command_line

from uqdiff.estimators.results import markdown_table
from uqdiff.inverse import measure
from uqdiff.models.problems import TASKS, ground_truths, solver_factory
from uqdiff.samplers.posterior import DPS_ZETA
from uqdiff.statistics import PSNR

STEPS, SAMPLES = 50, 8
QUICK_STEPS, QUICK_SAMPLES = 4, 2  # --quick: a smoke run, its PSNRs mean nothing


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser, "inverse")
    args = parser.parse_args(argv)
    steps, samples = (QUICK_STEPS, QUICK_SAMPLES) if args.quick else (STEPS, SAMPLES)
    torch.set_num_threads(args.threads or 2)
    truths, source = ground_truths("fashion", 1)
    rows = []
    for task in ("inpainting", "super_resolution"):
        m = measure(truths[0], task, seed=[args.seed, 0], **TASKS["fashion"][task])
        psnr = PSNR(m.truth)
        for label, zeta in (("unscaled", DPS_ZETA[task]), ("default", DPS_ZETA[task] * math.sqrt(1000 / steps))):
            g = solver_factory("fashion", "dps", steps=steps, zeta=zeta)(m)
            out = g(torch.randn(samples, *g.noise_shape, generator=torch.Generator().manual_seed(args.seed)))
            rows.append(
                {
                    "task": task,
                    "zeta": label,
                    "value": round(zeta, 3),
                    "naive_psnr": float(psnr(m.naive)[0]),
                    "sample_psnr": float(psnr(out).mean()),
                    "posterior_mean_psnr": float(psnr(out.mean(0, keepdim=True))[0]),
                }
            )
            print(rows[-1], flush=True)
    frame = pd.DataFrame(rows)
    table = markdown_table(frame.round(2))
    name = "dps_step_size_quick" if args.quick else "dps_step_size"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.md").write_text(
        f"# DPS step size at {steps} steps\n\n`{command_line()}` (Fashion-MNIST test image "
        f"{source['test_indices'][0]}, {samples} samples per row, seed {args.seed})\n\n{table}\n"
    )
    (args.out / f"{name}.json").write_text(json.dumps(rows, indent=1))
    print(table)
    return frame


if __name__ == "__main__":
    main()
