"""Which noise design helps the metrics inverse solvers are judged by (issue 22, section 3).

Per-image expected L1 and PSNR of a posterior sampler are close to even functions of its noise,
which antithetic pairs cannot help. This script measures what can: K-antithetic groups, RQMC on
a low-frequency DCT subspace of x_T (K-antithetic on the rest), RQMC on the solver's whole stream
(x_T and every step's noise) and noise control variates (DCT features of x_T and their squares,
which reach the even part), and ``design="auto"`` as users get it (a 10 % pilot choosing per
metric, at a budget of max(budget, 160); its efficiency is against MC spending the whole budget,
pilot included, so falling back to MC scores about 0.9). For each solver (DPS, DDS on the
project's Fashion-MNIST DDPM, float64; DiffPIR from examples/diffpir.py under capture, float32),
each test image and each design, one run of ``--budget`` posterior samples gives the design's
within-run efficiency against plain MC at the same budget (``implied_efficiency``: marginal
variance / (k x variance of group means); for control variates against MC on the raw metric,
pilot included). Over images the efficiency is summarized by its geometric mean with a t interval
on the log scale (images are independent), the issue's goal being at least 2 on L1 and PSNR.

    python benchmarks/solver_designs.py            # 4 images, inpainting, 10 steps, budget 128
    python benchmarks/solver_designs.py --quick    # 2 images, 3 steps, budget 64 (smoke test)
    python benchmarks/solver_designs.py --task gaussian_blur --images 8 --out benchmarks/results/gpu  # on a GPU
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings

import _common  # noqa: F401  (first: puts this checkout's uqdiff on the path)
import numpy as np
import pandas as pd
import torch
from _common import ROOT, add_common_arguments, write_results
from scipy import stats

from uqdiff import (
    AutoDesign,
    ControlVariates,
    DCTFeatures,
    KAntithetic,
    RunSettings,
    SobolRQMC,
    estimate,
    subspace_rqmc,
)
from uqdiff.estimators.results import markdown_table
from uqdiff.inverse import measure
from uqdiff.models.fashion import fashion_prior
from uqdiff.models.problems import TASKS, ground_truths
from uqdiff.samplers import DDS, DPS, as_sampler
from uqdiff.statistics import L1, PSNR

GOAL = 2.0
AUTO_BUDGET = 160  # the smallest budget design="auto" runs at with its default pilot share


def designs(noise_shape: tuple[int, ...], n: int) -> dict[str, dict]:
    """The candidates: name -> estimate() options."""
    return {
        "k-antithetic(8)": {"design": KAntithetic(8)},
        f"subspace RQMC (n={n})": {"design": subspace_rqmc(noise_shape, n, dims=16)},
        f"RQMC whole stream (n={n})": {"design": SobolRQMC(n)},
        "MC + control variates": {"control_variates": ControlVariates(DCTFeatures(), pilot_share=0.25)},
        # auto as users get it: its default 10 % pilot, which needs a budget of 160 (16 pilot noises)
        "auto": {"design": AutoDesign(), "budget": AUTO_BUDGET},
    }


def geometric_summary(values: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """Geometric mean of positive efficiencies with a t interval on the log scale (NaN with fewer than 2)."""
    logs = np.log(np.asarray([v for v in values if v > 0 and math.isfinite(v)], dtype=np.float64))
    if len(logs) < 2:
        return math.nan, math.nan, math.nan
    mean, se = logs.mean(), logs.std(ddof=1) / math.sqrt(len(logs))
    q = stats.t.ppf(0.5 + level / 2, len(logs) - 1)
    return float(np.exp(mean)), float(np.exp(mean - q * se)), float(np.exp(mean + q * se))


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=4, help="Fashion-MNIST test images (default 4)")
    parser.add_argument("--budget", type=int, default=128, help="posterior samples per image and design (default 128)")
    parser.add_argument("--steps", type=int, default=10, help="solver steps (default 10)")
    parser.add_argument(
        "--task", default="inpainting", choices=list(TASKS["fashion"]), help="task (default inpainting)"
    )
    parser.add_argument(
        "--solvers",
        nargs="+",
        default=["DPS", "DDS"],
        choices=["DPS", "DDS", "DiffPIR"],
        help="solvers (default DPS DDS; DiffPIR: examples/diffpir.py under capture, float32 prior)",
    )
    parser.add_argument(
        "--designs",
        nargs="+",
        default=None,
        help="only the designs whose names start with these words (e.g. auto; default: all)",
    )
    parser.add_argument("--device", default=None, help="torch device of the model (default: CUDA when available)")
    add_common_arguments(parser, "solver_designs")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.budget, args.steps = 2, 64, 3
    if args.threads:
        torch.set_num_threads(args.threads)
    n = 8 if args.budget >= 128 else 4  # Sobol' points per replicate: budget / n replicates (16 at 128)
    truths, source = ground_truths("fashion", args.images)
    prior = fashion_prior(num_inference_steps=args.steps, device=args.device, dtype=torch.float64)
    solvers = {"DPS": lambda m: DPS(prior, m), "DDS": lambda m: DDS(prior, m)}
    if "DiffPIR" in args.solvers:
        sys.path.insert(0, str(ROOT))
        from examples.diffpir import factory

        solvers["DiffPIR"] = factory("fashion", steps=args.steps, device=args.device)
    solvers = {name: solvers[name] for name in args.solvers}
    per_image, seconds = [], {}
    for solver, make in solvers.items():
        start = time.perf_counter()
        for j, truth in enumerate(truths):
            m = measure(truth.double(), args.task, sigma_y=0.05, seed=[args.seed, j], **TASKS["fashion"][args.task])
            sampler = make(m)
            metrics = {"l1": L1(m.truth), "psnr": PSNR(m.truth)}
            candidates = designs(as_sampler(sampler).noise_shape, n)
            if args.designs:
                candidates = {k: v for k, v in candidates.items() if any(k.startswith(w) for w in args.designs)}
            for name, options in candidates.items():
                options = dict(options)
                budget = max(options.pop("budget", args.budget), args.budget)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)  # few groups per image: summarized over images
                    r = estimate(
                        sampler,
                        metrics,
                        budget=budget,
                        seed=[args.seed, j, 1],
                        run=RunSettings(batch_size=budget),
                        **options,
                    )
                for stat, res in r.results.items():
                    # auto's implied efficiency is already against MC spending the whole budget, pilot included
                    per_image.append(
                        {
                            "solver": solver,
                            "image": j,
                            "design": name,
                            "statistic": stat,
                            "estimate": float(res.estimate),
                            "groups": res.n_groups,
                            "efficiency": res.implied_efficiency,
                            "low": res.implied_efficiency_low,
                            "high": res.implied_efficiency_high,
                            "chosen": res.design,
                        }
                    )
            print(f"{solver} image {j}: done ({time.perf_counter() - start:.0f} s)", flush=True)
        seconds[solver] = time.perf_counter() - start
    frame = pd.DataFrame(per_image)
    rows = []
    for (solver, design, stat), part in frame.groupby(["solver", "design", "statistic"], sort=False):
        g, lo, hi = geometric_summary(part["efficiency"].tolist())
        rows.append(
            {
                "solver": solver,
                "statistic": stat,
                "design": design,
                "images": len(part),
                "efficiency (geometric mean)": g,
                "low": lo,
                "high": hi,
                "per image": " ".join(f"{v:.2f}" for v in part["efficiency"]),
                "chosen": ", ".join(sorted(set(part["chosen"]))) if design.startswith("auto") else "",
            }
        )
    summary = pd.DataFrame(rows)
    table = markdown_table(summary)
    print(table)
    best = summary.loc[summary.groupby(["solver", "statistic"])["efficiency (geometric mean)"].idxmax()]
    verdict = [
        f"{b.solver} {b.statistic}: best {b.design}, {b['efficiency (geometric mean)']:.2f} "
        f"({b.low:.2f} .. {b.high:.2f}) against MC; goal {GOAL:g}: {'met' if b.low >= GOAL else 'not shown'}"
        for _, b in best.iterrows()
    ]
    print("\n".join(verdict))
    write_results(
        args.out,
        "solver_designs"
        + ("" if args.task == "inpainting" else f"_{args.task}")
        + ("" if args.solvers == ["DPS", "DDS"] else "_" + "_".join(args.solvers).lower())
        + ("" if not args.designs else "_" + "_".join(args.designs).lower())
        + ("_quick" if args.quick else ""),
        title="Designs for the metrics solvers are judged by: efficiency against MC on per-image L1 and PSNR",
        intro=[
            f"Fashion-MNIST DDPM (float64 for DPS and DDS, float32 for DiffPIR, on {prior.device}), {args.task}, "
            f"{args.steps} steps, {args.images} test images "
            f"({source}), {args.budget} posterior samples per image and design. Efficiency: each run's "
            "implied efficiency against plain MC at the same budget; over images, the geometric mean with a "
            "95% t interval on the log scale. Seconds per solver: "
            + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items())
            + ".",
        ],
        table=table,
        data={"summary": rows, "per_image": per_image, "verdict": verdict},
        notes=verdict,
    )
    return summary


if __name__ == "__main__":
    main()
