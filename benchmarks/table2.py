"""Table-2 style benchmark: CI width and efficiency (CI_MC / CI)^2 of MC, AMC k=2, AMC k=8 and RQMC at an equal budget.

Defaults are the paper's (001, section 5.1 and table 11): 3200 model
evaluations per design, RQMC with R x n in {25 x 128, 50 x 64, 200 x 16},
50 DDIM steps. A smaller ``--budget`` keeps the replicate counts R and
scales the Sobol' point count n = budget / R (it must be a power of two),
so every interval keeps its degrees of freedom. Intervals follow the paper:
normal for MC and AMC, Student-t on R - 1 df for RQMC. Both models are
single-channel, so brightness equals the pixel mean and is not repeated.

    python benchmarks/table2.py --model terrain                  # paper budget, ~48 min on 2 CPU cores
    python benchmarks/table2.py --model fashion --budget 400     # n = 16, 8, 2
    python benchmarks/table2.py --model fashion --quick          # seconds
"""

from __future__ import annotations

import argparse
import json
import time

import _common  # noqa: F401  (first: puts this checkout's uqdiff on the path)
import pandas as pd
import torch
from _common import MODELS, add_common_arguments, device_name, load_model, write_results

from uqdiff import IID, Antithetic, KAntithetic, SobolRQMC, compare
from uqdiff.estimators.intervals import quantile
from uqdiff.estimators.results import markdown_table
from uqdiff.estimators.settings import RunSettings
from uqdiff.statistics import Contrast, PixelMean, VerticalCentroid

#: Paper 001, CIFAR-10 (the closest of its models to ours: small, unconditional, 50 DDIM steps).
#: MC: CI width; others: efficiency. Table 2 for MC, AMC and RQMC 50 x 64; table 11 for RQMC 25 x 128 and 200 x 16.
PAPER_CIFAR10 = {
    "mean": {"mc": 2.04, "amc2": 27.12, "amc8": 27.34, 25: 25.71, 50: 26.94, 200: 17.30},
    "contrast": {"mc": 1.08, "amc2": 22.05, "amc8": 20.37, 25: 24.57, 50: 23.43, 200: 14.20},
    "centroid": {"mc": 0.14, "amc2": 9.73, "amc8": 13.94, 25: 8.17, 50: 9.65, 200: 5.84},
    "brightness": {"mc": 2.00, "amc2": 32.66, "amc8": 30.35, 25: 29.81, 50: 32.05, 200: 18.38},
}


def designs_for(generator, budget: int, replicates: list[int]) -> dict:
    """Paper label -> design; RQMC covers the initial noise (the whole noise for deterministic samplers)."""
    chosen = {"mc": IID(), "amc2": Antithetic(), "amc8": KAntithetic(8)}
    for r in replicates:
        n = budget // r
        if budget % r or n & (n - 1):
            raise ValueError(f"--budget {budget} / R = {r} must be a power of two (Sobol' points per replicate)")
        chosen[r] = SobolRQMC(n)
    return chosen


def label(key, budget: int) -> str:
    return {"mc": "MC", "amc2": "AMC k=2", "amc8": "AMC k=8"}.get(key) or f"RQMC {key} x {budget // key}"


def table(comparison, chosen: dict, budget: int, level: float = 0.95) -> pd.DataFrame:
    """One row per (statistic, design): estimate, the paper's interval width, efficiencies, the paper's figure."""
    paper_width = {}
    for key, design in chosen.items():
        for stat, r in comparison.estimates[design.name].results.items():
            kind = "t" if isinstance(key, int) else "normal"
            paper_width[stat, key] = 2 * quantile(level, r.df, kind) * r.standard_error
    rows = []
    for stat in PAPER_CIFAR10:
        if (stat, "mc") not in paper_width:
            continue
        for key, design in chosen.items():
            r = comparison.estimates[design.name][stat]
            mc = key == "mc"
            rows.append(
                {
                    "statistic": stat,
                    "design": label(key, budget),
                    "groups x size": f"{r.n_groups} x {r.group_size}",
                    "estimate": r.estimate,
                    "CI width": paper_width[stat, key],
                    "efficiency": None if mc else (paper_width[stat, "mc"] / paper_width[stat, key]) ** 2,
                    "implied efficiency": None if r.implied_efficiency is None else float(r.implied_efficiency),
                    "paper CIFAR-10": f"width {PAPER_CIFAR10[stat][key]}" if mc else PAPER_CIFAR10[stat].get(key, ""),
                }
            )
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=MODELS, default="terrain")
    parser.add_argument("--budget", type=int, default=3200, help="model evaluations per design (default 3200)")
    parser.add_argument("--replicates", default="25,50,200", help="RQMC replicate counts R (default 25,50,200)")
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps of the Fashion-MNIST DDPM (default 50)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    add_common_arguments(parser, "table2")
    args = parser.parse_args(argv)
    if args.quick:
        args.budget, args.replicates, args.steps = 32, "2,4,8", 2
    if args.threads:
        torch.set_num_threads(args.threads)
    replicates = [int(r) for r in args.replicates.split(",")]

    generator, description = load_model(args.model, steps=args.steps, device=args.device)
    statistics = [PixelMean(scale=255), Contrast(), VerticalCentroid()]
    chosen = designs_for(generator, args.budget, replicates)
    print(f"{description}; budget {args.budget} per design, seed {args.seed}, {device_name(args.device)}", flush=True)
    start = time.perf_counter()
    comparison = compare(
        generator,
        statistics,
        budget=args.budget,
        designs=list(chosen.values()),
        seed=args.seed,
        run=RunSettings(batch_size=args.batch_size),
    )
    seconds = time.perf_counter() - start
    frame = table(comparison, chosen, args.budget)
    print(frame.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    print(f"\n{seconds:.0f} s")

    name = args.model + ("_quick" if args.quick else "")
    write_results(
        args.out,
        name,
        title=f"Table 2 (paper 001) on the {description}",
        intro=[
            f"Budget {args.budget} model evaluations per design, seed {args.seed}, batch size {args.batch_size}; "
            f"device {device_name(args.device)}; {seconds:.0f} s for all designs.",
            "CI width: 95% interval, normal for MC and AMC, Student-t on R - 1 df for RQMC (the paper's choice). "
            "Efficiency = (CI width of MC / CI width of the design)^2 at the same budget, from one run each. "
            "Implied efficiency = marginal variance / (group size x variance of group means), the within-run "
            "estimate of the same ratio (less noisy). Mean on the 0..255 scale, contrast = 100 (top - bottom "
            "half), centroid = row index.",
        ],
        table=markdown_table(frame),
        data={
            "model": args.model,
            "description": description,
            "budget": args.budget,
            "seed": args.seed,
            "replicates": replicates,
            "steps": args.steps if args.model == "fashion" else None,
            "device": device_name(args.device),
            "seconds": seconds,
            "table": frame.to_dict(orient="records"),
            "paper_cifar10": {s: {str(k): v for k, v in d.items()} for s, d in PAPER_CIFAR10.items()},
            "comparison": json.loads(comparison.to_json()),
        },
        notes=[
            "Paper column: CIFAR-10 in paper 001 (table 2 for MC width, AMC and RQMC 50 x 64; table 11 for RQMC "
            "25 x 128 and 200 x 16), budget 3200. Our RQMC row with R replicates is compared with the paper's row "
            "with the same R (at a smaller budget n is smaller).",
            "Brightness is not listed: both models give one channel, for which brightness equals the pixel mean.",
        ],
    )
    return frame


if __name__ == "__main__":
    main()
