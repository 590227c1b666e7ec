"""Why DDS on the terrain model does not beat upsampling of a low-resolution heightmap.

    python benchmarks/terrain_sr_diagnosis.py
    python benchmarks/terrain_sr_diagnosis.py --quick   # 2 settings x 2 samples, 2 steps: *_quick (seconds)

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

import argparse
import json

import _common  # noqa: F401  (first: puts this checkout's uqdiff on the path)
import numpy as np
import pandas as pd
import torch
from _common import add_common_arguments, command_line

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
SAMPLES = 8
#: --quick: the two ends of the table (fine and coarse schedule end) with 2 steps and 2 samples each.
QUICK_SETTINGS, QUICK_SAMPLES = [(2, 0.02, 4, "auto"), (2, 3.0, 8, "auto")], 2


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser, "inverse")
    args = parser.parse_args(argv)
    settings, samples = (QUICK_SETTINGS, QUICK_SAMPLES) if args.quick else (SETTINGS, SAMPLES)
    threads = args.threads or 1  # this script's default: one thread for torch and for the ONNX model
    torch.set_num_threads(threads)
    model = TerrainGenerator(difficulty=50, threads=threads)
    z = torch.as_tensor(np.random.default_rng(909_090).standard_normal((1, 1, SIZE, SIZE)), dtype=torch.float32)
    truth = model(z)[0]
    psnr = PSNR(truth)
    rows = []
    for steps, sigma_min, factor, lam in settings:
        m = measure(truth, "super_resolution", seed=[args.seed, 0], factor=factor, mode="avgpool")
        g = DDS(VEDenoiserPrior(model.denoise, (1, SIZE, SIZE), num_steps=steps, sigma_min=sigma_min), m, lam=lam)
        out = g(torch.randn(samples, *g.noise_shape, generator=torch.Generator().manual_seed(args.seed)))
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
    frame = pd.DataFrame(rows)
    table = markdown_table(frame.round(2))
    name = "terrain_sr_diagnosis_quick" if args.quick else "terrain_sr_diagnosis"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.md").write_text(
        f"# DDS super-resolution on the terrain model: diagnosis\n\n`{command_line()}` "
        f"(1 held-out terrain, {samples} samples per row; truth std {float(truth.std()):.3f} on the [-1, 1] scale)"
        f"\n\n{table}\n"
    )
    (args.out / f"{name}.json").write_text(json.dumps(rows, indent=1))
    print(table)
    return frame


if __name__ == "__main__":
    main()
