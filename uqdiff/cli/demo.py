"""Demo: MC vs antithetic vs K-antithetic vs RQMC at an equal budget of model calls.

Default model: the pretrained terrain consistency model (adaptive-terrain-diffusion,
ONNX, 1 x 128 x 128 heightmaps) at one difficulty. Statistics: mean height,
contrast (top vs bottom half), vertical centroid and mean slope, all on the
[0, 1]-scaled heightmap. ``--model oracle`` runs the same comparison on an
exact DDIM sampler for Gaussian data whose pixel mean is known in closed form.

    python -m uqdiff.cli.demo                       # terrain, budget 256 per design (~2 min on 2 CPU cores)
    python -m uqdiff.cli.demo --model oracle --budget 3200
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from uqdiff.designs import KAntithetic, SobolRQMC
from uqdiff.estimators import RunSettings, compare
from uqdiff.samplers import landscape_oracle
from uqdiff.statistics import Contrast, MeanSlope, PixelMean, VerticalCentroid

#: Measured: this demo (terrain, budget 256 per design) ran in 84 s to 1 min 49 s on an idle 2-core CPU
#: and 2 min 47 s on a busy one (see the README).
EXPECTED_DURATION = "1.5 to 2 minutes on 2 idle CPU cores, about 3 on a busy machine"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["terrain", "oracle"], default="terrain")
    parser.add_argument("--difficulty", type=int, default=50, help="terrain difficulty 1..100 (default 50)")
    parser.add_argument(
        "--budget", type=int, default=None, help="model evaluations per design (terrain 256, oracle 3200)"
    )
    parser.add_argument("--rqmc-n", type=int, default=16, help="Sobol' points per RQMC replicate (default 16)")
    parser.add_argument("--k", type=int, default=8, help="group size of the K-antithetic design (default 8)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--out", type=Path, default=None, help="also write comparison.json and comparison.md here")
    args = parser.parse_args(argv)

    if args.model == "terrain":
        from uqdiff.models.terrain import TerrainGenerator

        generator = TerrainGenerator(args.difficulty)
        budget = args.budget or 256
        label = f"terrain consistency model (difficulty {args.difficulty}, one step, 1x128x128)"
    else:
        generator = landscape_oracle()
        budget = args.budget or 3200
        label = "oracle DDIM (Gaussian data, 1x32x32, clipped)"
    statistics = [PixelMean(), Contrast(), VerticalCentroid(), MeanSlope()]
    designs = ["mc", "antithetic", KAntithetic(args.k), SobolRQMC(args.rqmc_n)]
    print(f"uqdiff demo: {label}; budget {budget} model evaluations per design, seed {args.seed}", flush=True)
    if args.model == "terrain" and budget == 256:
        print(f"expected duration: {EXPECTED_DURATION}; the progress bar shows the time left\n", flush=True)
    start = time.perf_counter()
    result = compare(
        generator,
        statistics,
        budget=budget,
        designs=designs,
        seed=args.seed,
        run=RunSettings(batch_size=args.batch_size, progress=not args.quiet),
    )
    print(result)
    print("implied_efficiency: the same ratio read from each design's own run (no MC run needed)")
    if args.model == "oracle":
        truth = generator.true_pixel_mean()
        print(f"\ntrue pixel mean (closed form): {truth:.6f}")
        for design, est in result.estimates.items():
            r = est["mean"]
            print(f"  {design:<24} {r.low:.6f} .. {r.high:.6f}  covers truth: {r.low <= truth <= r.high}")
    seconds = time.perf_counter() - start
    print(f"\ndone in {seconds:.0f} s")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "comparison.json").write_text(result.to_json(indent=2) + "\n")
        table = result.to_markdown()
        (args.out / "comparison.md").write_text(
            f"# uqdiff demo: {label}\n\nBudget {budget} model evaluations per design, seed {args.seed}, "
            f"batch size {args.batch_size}; {seconds:.0f} s on this machine.\n"
            "Efficiency = (CI width of MC / CI width of the design)^2 at the same budget.\n\n" + table + "\n"
        )


if __name__ == "__main__":
    main()
