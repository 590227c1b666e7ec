"""Which solver is better over Fashion-MNIST test images: DPS against DDS with uqdiff.evaluate_solvers.

For each task, ``--images`` test images (the same ones for both solvers), ``--budget`` posterior
samples per image and solver on common antithetic noise, ``--steps`` solver steps on the
project's Fashion-MNIST DDPM (float64 prior: DPS's guided steps grow float32 rounding, see
docs/capture.md). Per task: the population mean of L1 and PSNR per solver with its two-level
interval and variance components, the difference with its Holm-adjusted test, the ranking with
what is resolved, and the efficiency of common noise + design against independent MC.

    python benchmarks/solver_population.py            # 20 images, 3 tasks (~10 min on 2 CPU cores)
    python benchmarks/solver_population.py --quick    # 3 images, 1 task, 4 steps (smoke test)
"""

from __future__ import annotations

import argparse
import time
import warnings

import _common  # noqa: F401  (first: puts this checkout's uqdiff on the path)
import pandas as pd
import torch
from _common import add_common_arguments, write_results

from uqdiff import evaluate_solvers
from uqdiff.estimators.results import markdown_table
from uqdiff.models.fashion import fashion_prior
from uqdiff.models.problems import TASKS, ground_truths
from uqdiff.samplers import DDS, DPS
from uqdiff.statistics import L1, PSNR


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=20, help="Fashion-MNIST test images (default 20)")
    parser.add_argument("--budget", type=int, default=8, help="posterior samples per image and solver (default 8)")
    parser.add_argument("--steps", type=int, default=20, help="solver steps (default 20)")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS["fashion"]), help="tasks (default all three)")
    add_common_arguments(parser, "inverse")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.budget, args.steps, args.tasks = 3, 4, 4, args.tasks[:1]
    if args.threads:
        torch.set_num_threads(args.threads)
    truths, source = ground_truths("fashion", args.images)
    prior = fashion_prior(num_inference_steps=args.steps, dtype=torch.float64)
    solvers = {"DPS": lambda m: DPS(prior, m), "DDS": lambda m: DDS(prior, m)}
    rows, conclusions, seconds = [], [], {}
    for task in args.tasks:
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # few images in --quick runs
            c = evaluate_solvers(
                solvers,
                truths.double(),
                task,
                budget=args.budget,
                design="antithetic",
                statistics=[L1, PSNR],
                operator_params=TASKS["fashion"][task],
                seed=args.seed,
            )
        seconds[task] = time.perf_counter() - start
        conclusions.append(f"{task}: {c.conclusion()}")
        print(conclusions[-1], f"({seconds[task]:.0f} s)", flush=True)
        for stat, per in c.means.items():
            for solver, m in per.items():
                rows.append(
                    {
                        "task": task,
                        "statistic": stat,
                        "row": solver,
                        "estimate": m.estimate,
                        "low": m.low,
                        "high": m.high,
                        "between-image variance": m.between_variance,
                        "per-sample variance": m.within_variance,
                        "recommended samples per image": m.recommended_samples_per_image,
                    }
                )
            for name, d in c.differences[stat].items():
                rows.append(
                    {
                        "task": task,
                        "statistic": stat,
                        "row": name,
                        "estimate": d.estimate,
                        "low": d.confidence_interval.low,
                        "high": d.confidence_interval.high,
                        "p (Holm)": d.p_holm,
                        "resolved": d.resolved,
                        "efficiency vs independent MC": d.efficiency,
                        "noise efficiency": d.noise_efficiency,
                        "ranking": c.ranking[stat],
                    }
                )
    frame = pd.DataFrame(rows)
    write_results(
        args.out,
        "solver_population_quick" if args.quick else "solver_population",
        title="DPS against DDS over Fashion-MNIST test images (uqdiff.evaluate_solvers)",
        intro=[
            f"{args.images} test images {source}, {args.budget} antithetic posterior samples per image and solver "
            f"on common noise, {args.steps} steps, float64 prior, seed {args.seed}; "
            + ", ".join(f"{t} {s:.0f} s" for t, s in seconds.items())
            + ".",
            *conclusions,
            "Rows named by a solver: its population mean (two-level interval over images) and variance components; "
            "rows 'DPS - DDS': the difference over images (t interval), Holm-adjusted p, and the efficiency of "
            "common noise + antithetic pairs against independent plain MC (population level, and noise only).",
        ],
        table=markdown_table(frame),
        data={"images": args.images, "budget": args.budget, "steps": args.steps, "rows": frame.to_dict("records")},
    )
    return frame


if __name__ == "__main__":
    main()
