"""Why DPS's default step size is scaled by sqrt(1000 / steps).

    python benchmarks/dps_step_size.py

DPS's per-task step sizes (0.5 inpainting, 0.3 super-resolution and blur) are
for 1000 steps. On the Fashion-MNIST DDPM at 50 steps this compares them,
unscaled, with uqdiff's default (times sqrt(1000 / 50)): PSNR of the naive
reconstruction, of each sample (mean over 8) and of the 8-sample posterior mean,
for the first ground truth of inverse_solvers.py. Writes
benchmarks/results/inverse/dps_step_size.{md,json}.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import torch

from uqdiff.estimators.results import markdown_table
from uqdiff.inverse import measure
from uqdiff.models.problems import TASKS, ground_truths, solver_factory
from uqdiff.samplers.posterior import DPS_ZETA
from uqdiff.statistics import PSNR

STEPS, SAMPLES = 50, 8


def main() -> None:
    torch.set_num_threads(2)
    truths, source = ground_truths("fashion", 1)
    rows = []
    for task in ("inpainting", "super_resolution"):
        m = measure(truths[0], task, seed=[0, 0], **TASKS["fashion"][task])
        psnr = PSNR(m.truth)
        for label, zeta in (("unscaled", DPS_ZETA[task]), ("default", DPS_ZETA[task] * math.sqrt(1000 / STEPS))):
            g = solver_factory("fashion", "dps", steps=STEPS, zeta=zeta)(m)
            out = g(torch.randn(SAMPLES, *g.noise_shape, generator=torch.Generator().manual_seed(0)))
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
    table = markdown_table(pd.DataFrame(rows).round(2))
    out_dir = Path(__file__).resolve().parent / "results" / "inverse"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "dps_step_size.md").write_text(
        f"# DPS step size at {STEPS} steps\n\n`python benchmarks/dps_step_size.py` (Fashion-MNIST test image "
        f"{source['test_indices'][0]}, {SAMPLES} samples per row, seed 0)\n\n{table}\n"
    )
    (out_dir / "dps_step_size.json").write_text(json.dumps(rows, indent=1))
    print(table)


if __name__ == "__main__":
    main()
