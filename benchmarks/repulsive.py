"""Repulsive particles (RSD) beside DPS and DDS over Fashion-MNIST test images: fidelity and diversity.

For each task, ``--images`` test images, ``--budget`` posterior samples per image and solver on
common noise, under ``Equicorrelated(4, 0.0)``: a group is 4 independent noises, which is one
particle set of RSD (its K = 4 particles interact, so they must be one group for the intervals
to hold) and 4 independent samples of DPS and DDS. Solvers: DPS, DDS and RSD on the classifier's
features (``solver_factory("fashion", "rsd")``) at each ``--gammas`` value, 0 being the
non-repulsive baseline (4 independent RED-diff runs), all on the project's Fashion-MNIST DDPM at
``--steps`` steps (float64 prior, as ``solver_population.py``). Statistics: L1 and PSNR against
the truth, and the diversity of a group, the mean pairwise squared distance of its 4 samples on
[0, 1] pixels (``MeanPairwiseL2``). Per solver the population mean over images with its
two-level interval; per pair the difference over images with Holm's correction
(``uqdiff.evaluate_solvers``).

    python benchmarks/repulsive.py            # 8 images, inpainting, 50 steps (~6 min on 2 CPU cores)
    python benchmarks/repulsive.py --quick    # 2 images, 4 steps (smoke test)
"""

from __future__ import annotations

import argparse
import time
import warnings

import _common  # noqa: F401  (first: puts this checkout's uqdiff on the path)
import pandas as pd
import torch
from _common import add_common_arguments, write_results

from uqdiff import Equicorrelated, evaluate_solvers
from uqdiff.estimators.results import markdown_table
from uqdiff.models.classifier import classifier_features
from uqdiff.models.fashion import fashion_prior
from uqdiff.models.problems import TASKS, ground_truths
from uqdiff.samplers import DDS, DPS, RSD
from uqdiff.statistics import L1, PSNR, MeanPairwiseL2, PerImage

K = 4  # particles per measurement = the design's group size


def diversity(truth):
    """Mean pairwise squared distance within each group of K samples (every sample gets its group's value)."""
    return PerImage(MeanPairwiseL2(), gallery_size=K, name="diversity")


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=8, help="Fashion-MNIST test images (default 8)")
    parser.add_argument("--budget", type=int, default=8, help="samples per image and solver, a multiple of 4 (8)")
    parser.add_argument("--steps", type=int, default=50, help="solver steps (default 50)")
    parser.add_argument("--gammas", type=float, nargs="+", default=[0.0, 3.0, 10.0], help="RSD gammas (0 3 10)")
    parser.add_argument("--tasks", nargs="+", default=["inpainting"], help="tasks (default inpainting)")
    add_common_arguments(parser, "repulsive")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.budget, args.steps, args.tasks = 2, 8, 4, args.tasks[:1]
    if args.threads:
        torch.set_num_threads(args.threads)
    truths, source = ground_truths("fashion", args.images)
    prior = fashion_prior(num_inference_steps=args.steps, dtype=torch.float64)
    features = classifier_features()
    solvers = {"DPS": lambda m: DPS(prior, m), "DDS": lambda m: DDS(prior, m)}
    for gamma in args.gammas:
        solvers[f"RSD{gamma:g}"] = lambda m, gamma=gamma: RSD(prior, m, particles=K, gamma=gamma, features=features)
    rows, conclusions, seconds = [], [], {}
    for task in args.tasks:
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # few images and groups per image
            c = evaluate_solvers(
                solvers,
                truths.double(),
                task,
                budget=args.budget,
                design=Equicorrelated(K, 0.0),
                statistics=[L1, PSNR, diversity],
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
                    }
                )
    frame = pd.DataFrame(rows)
    write_results(
        args.out,
        "repulsive_quick" if args.quick else "repulsive",
        title="Repulsive particles (RSD) beside DPS and DDS over Fashion-MNIST test images",
        intro=[
            f"{args.images} test images {source}, {args.budget} samples per image and solver on common noise under "
            f"Equicorrelated({K}, 0.0) (a group: one RSD particle set, or {K} independent DPS/DDS samples), "
            f"{args.steps} steps, float64 prior, RSD on the classifier's features, seed {args.seed}; "
            + ", ".join(f"{t} {s:.0f} s" for t, s in seconds.items())
            + ".",
            *conclusions,
            "RSD<g>: RSD at gamma = g (RSD0: 4 independent RED-diff runs). "
            "Rows named by a solver: its population mean over images (two-level interval). Rows 'A - B': the "
            "difference over images (t interval) and Holm-adjusted p over all pairs. diversity: mean pairwise squared distance of a group's "
            f"{K} samples on [0, 1] pixels (higher: more diverse).",
        ],
        table=markdown_table(frame),
        data={
            "images": args.images,
            "budget": args.budget,
            "steps": args.steps,
            "gammas": args.gammas,
            "rows": frame.to_dict("records"),
        },
    )
    return frame


if __name__ == "__main__":
    main()
