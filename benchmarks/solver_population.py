"""Which solver is better over a population of images: DPS, DDS, RSD and DiffPIR with uqdiff.evaluate_solvers.

``--model fashion`` (default): four solvers on the project's Fashion-MNIST DDPM (float64 prior for
DPS, whose guided steps grow float32 rounding; see docs/capture.md): DPS and DDS (uqdiff's), RSD (repulsive particles, K = 4 per
set, gamma 3 on the classifier's features) and DiffPIR written the way research code is written
(``examples/diffpir.py``: torch.randn inside its loop, run unmodified under ``Captured``).
For each task, ``--images`` test images (the same ones for every solver), ``--budget`` posterior
samples per image and solver on common noise, ``--steps`` solver steps. The design is antithetic
particle sets (``uqdiff.AntitheticSets(4)``): a group is 8 noises, two sets of 4 independent noises
where the second set is the negation of the first. Each set of 4 is one RSD particle set with the
joint law RSD is defined with (4 independent N(0, I)), and for the other solvers a group is 4 antithetic pairs.
``--model terrain``: DDS and DiffPIR on the terrain consistency model's denoiser (a black box: no
network gradient for DPS, no classifier for RSD), sparse elevations (92-96% missing) and
super-resolution x4, 8 samples per image and solver under antithetic pairs.

Per task: the population mean of L1 and PSNR per solver with its two-level interval and variance
components, every difference with its Holm-adjusted test, the ranking with what is resolved, and
the efficiency of common noise + design against independent MC.

    python benchmarks/solver_population.py            # 20 images, 3 tasks (~40 min on 2 CPU cores)
    python benchmarks/solver_population.py --quick    # 2 images, 1 task, 3 steps (smoke test)
    python benchmarks/solver_population.py --model terrain   # 20 terrains, 2 tasks (~25 min on 2 CPU cores)
    python benchmarks/solver_population.py --device cuda --out benchmarks/results/gpu   # on a GPU
"""

from __future__ import annotations

import argparse
import time
import warnings

import _common  # noqa: F401  (first: puts this checkout's uqdiff on the path)
import pandas as pd
import torch
from _common import ROOT, add_common_arguments, write_results

from uqdiff import AntitheticSets, evaluate_solvers
from uqdiff.estimators.results import markdown_table
from uqdiff.models.problems import RSD_PARTICLES, TASKS, ground_truths, solver_factory
from uqdiff.statistics import L1, PSNR

K = RSD_PARTICLES  # RSD particles per set (the factory's, as on the command line)


def solvers(model: str, steps: int, device: str | None) -> tuple[dict, AntitheticSets | str, str]:
    """The model's solvers as factories measurement -> sampler, their design and its story.

    The named solvers come from :func:`uqdiff.models.problems.solver_factory`, as ``uqdiff evaluate``
    builds them (DPS on a float64 prior; RSD with the classifier's features and gamma 3).
    Fashion-MNIST: DPS, DDS, RSD and DiffPIR under antithetic particle sets. Terrain (a black-box
    denoiser: no network gradient, no classifier): DDS and DiffPIR under antithetic pairs.
    """
    import sys

    sys.path.insert(0, str(ROOT))
    from examples.diffpir import factory as diffpir

    if model == "terrain":
        factories = {"DDS": solver_factory("terrain", "dds", steps=steps), "DiffPIR": diffpir("terrain", steps=steps)}
        return factories, "antithetic", "antithetic pairs"
    factories = {
        name.upper(): solver_factory("fashion", name, steps=steps, device=device) for name in ("dps", "dds", "rsd")
    }
    factories["DiffPIR"] = diffpir("fashion", steps=steps, device=device)
    story = (
        f"{AntitheticSets(K).name} (a group: one RSD particle set of {K} and its negation; for DPS, DDS and DiffPIR "
        f"{K} antithetic pairs); RSD gamma 3"
    )
    return factories, AntitheticSets(K), story


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="fashion", choices=["fashion", "terrain"], help="model (default fashion)")
    parser.add_argument("--images", type=int, default=20, help="test images (default 20)")
    parser.add_argument(
        "--budget",
        type=int,
        default=None,
        help="posterior samples per image and solver (default: 16 for fashion, a multiple of 8; 8 for terrain)",
    )
    parser.add_argument("--steps", type=int, default=None, help="solver steps (default 20 for fashion, 10 for terrain)")
    parser.add_argument("--tasks", nargs="+", default=None, help="tasks (default: all of the model's)")
    parser.add_argument("--device", default=None, help="torch device of the models (default: CUDA when available)")
    add_common_arguments(parser, "inverse")
    args = parser.parse_args(argv)
    fashion = args.model == "fashion"
    args.budget = args.budget or (16 if fashion else 8)
    args.steps = args.steps or (20 if fashion else 10)
    args.tasks = args.tasks or list(TASKS[args.model])
    if args.quick:
        args.images, args.steps, args.tasks = 2, 3, args.tasks[:1]
    if args.threads:
        torch.set_num_threads(args.threads)
    truths, source = ground_truths(args.model, args.images)
    factories, design, story = solvers(args.model, args.steps, args.device)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        device += f" ({torch.cuda.get_device_name(torch.device(device))})"
    frames, conclusions, seconds = [], [], {}
    for task in args.tasks:
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # few images in --quick runs
            c = evaluate_solvers(
                factories,
                truths.double(),
                task,
                budget=args.budget,
                design=design,
                statistics=[L1, PSNR],
                operator_params=TASKS[args.model][task],
                seed=args.seed,
            )
        seconds[task] = time.perf_counter() - start
        conclusions.append(f"{task}: {c.conclusion()}")
        print(conclusions[-1], f"({seconds[task]:.0f} s)", flush=True)
        frame = c.to_frame().drop(columns=["confidence_interval"], errors="ignore")
        frame.insert(0, "task", task)
        frame.loc[frame.kind == "difference", "ranking"] = frame.statistic.map(c.ranking)
        frames.append(frame)
        # written after every task: a run stopped by a time limit keeps the tasks it finished
        frame = pd.concat(frames, ignore_index=True).dropna(axis=1, how="all")
        write_results(
            args.out,
            "solver_population" + ("" if fashion else "_terrain") + ("_quick" if args.quick else ""),
            title=f"{', '.join(factories)} over {'Fashion-MNIST test images' if fashion else 'terrains'} "
            "(uqdiff.evaluate_solvers)",
            intro=[
                f"{args.model}: {args.images} test images {source}; per image and solver {args.budget} posterior "
                f"samples on common noise ({c.common_noise}), design {story}; {args.steps} steps; seed {args.seed}; "
                f"models on {device}. Wall time per task: "
                + ", ".join(f"{t} {s:.0f} s" for t, s in seconds.items())
                + ".",
                *conclusions,
                "kind 'mean': a solver's population mean (two-level interval over images), variance components and "
                "recommended samples per image; kind 'difference': first - second over images (t interval), "
                "Holm-adjusted p, and the efficiency of common noise + design against independent plain MC per "
                "solver (population level, and the noise part alone).",
            ],
            table=markdown_table(frame),
            data={
                "images": args.images,
                "budget": args.budget,
                "steps": args.steps,
                "device": device,
                "seconds": seconds,
                "rows": frame.to_dict("records"),
            },
        )
    return frame


if __name__ == "__main__":
    main()
