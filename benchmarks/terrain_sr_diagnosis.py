"""Why DDS on the terrain model does not beat upsampling of a low-resolution heightmap.

    python benchmarks/terrain_sr_diagnosis.py

For one held-out terrain (the first ground truth of inverse_solvers.py
--model terrain) and 8 DDS samples per setting, prints the PSNR of the
bicubic-upsampled measurement (naive), of each sample (mean over samples), of
the 8-sample posterior mean, and of the samples' own low-resolution content
upsampled (does DDS fit the measurement?). Settings vary the schedule's last
noise level (the consistency model adds detail at small sigma), the pooling
factor and the data-consistency weight. Writes
benchmarks/results/inverse/terrain_sr_diagnosis.{md,json}.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from uqdiff.estimators.results import markdown_table
from uqdiff.inverse import VEDenoiserPrior, measure
from uqdiff.models.terrain import SIZE, TerrainGenerator
from uqdiff.samplers.posterior import DDS
from uqdiff.statistics import PSNR

SETTINGS = [  # (steps, sigma_min, factor, lam)
    (10, 0.02, 4, 0.0),
    (10, 0.02, 4, "auto"),
    (6, 1.0, 4, "auto"),
    (6, 3.0, 4, "auto"),
    (6, 3.0, 8, "auto"),
    (6, 3.0, 16, "auto"),
]


def main() -> None:
    torch.set_num_threads(1)
    model = TerrainGenerator(difficulty=50, threads=1)
    z = torch.as_tensor(np.random.default_rng(909_090).standard_normal((1, 1, SIZE, SIZE)), dtype=torch.float32)
    truth = model(z)[0]
    psnr = PSNR(truth)
    rows = []
    for steps, sigma_min, factor, lam in SETTINGS:
        m = measure(truth, "super_resolution", seed=[0, 0], factor=factor, mode="avgpool")
        g = DDS(VEDenoiserPrior(model.denoise, (1, SIZE, SIZE), num_steps=steps, sigma_min=sigma_min), m, lam=lam)
        out = g(torch.randn(8, *g.noise_shape, generator=torch.Generator().manual_seed(0)))
        rows.append(
            {
                "steps": steps,
                "sigma_min": sigma_min,
                "factor": factor,
                "lam": str(lam),
                "naive_psnr": float(psnr(m.naive)[0]),
                "sample_psnr": float(psnr(out).mean()),
                "posterior_mean_psnr": float(psnr(out.mean(0, keepdim=True))[0]),
                "lowres_of_samples_psnr": float(psnr(m.operator.naive(m.operator(out))).mean()),
            }
        )
        print(rows[-1], flush=True)
    out_dir = Path(__file__).resolve().parent / "results" / "inverse"
    table = markdown_table(__import__("pandas").DataFrame(rows).round(2))
    (out_dir / "terrain_sr_diagnosis.md").write_text(
        "# DDS super-resolution on the terrain model: diagnosis\n\n`python benchmarks/terrain_sr_diagnosis.py` "
        f"(1 held-out terrain, 8 samples per row; truth std {float(truth.std()):.3f} on the [-1, 1] scale)\n\n{table}\n"
    )
    (out_dir / "terrain_sr_diagnosis.json").write_text(json.dumps(rows, indent=1))
    print(table)


if __name__ == "__main__":
    main()
