"""DPS against DDS on one task with common random numbers (issue 7, part 4).

    python benchmarks/dps_vs_dds.py                  # Fashion-MNIST super-resolution x2, 2 images
    python benchmarks/dps_vs_dds.py --quick          # seconds: a smoke run

For each ground truth (Fashion-MNIST test set, as in inverse_solvers.py) one
measurement is drawn; DPS and DDS (both 50 steps, so their noise streams have
one shape) then get the *same* noise, under antithetic pairs. The difference
E[S(DPS)] - E[S(DDS)] of L1 and PSNR comes with its interval and p-value, and
with its efficiency against independent plain-MC runs of both solvers at the
same total budget (``efficiency``) and against independent runs of the same
design (``implied_crn_efficiency``), both read from this run (see uqdiff.estimators.paired).
Writes benchmarks/results/inverse/dps_vs_dds.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from uqdiff.estimators.paired import paired_estimate
from uqdiff.estimators.results import markdown_table
from uqdiff.estimators.settings import RunSettings
from uqdiff.inverse import measure
from uqdiff.models.problems import TASKS, ground_truths, solver_factory
from uqdiff.statistics import L1, PSNR

RESULTS = Path(__file__).resolve().parent / "results" / "inverse"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="super_resolution", choices=list(TASKS["fashion"]))
    p.add_argument("--images", type=int, default=2)
    p.add_argument("--noises", type=int, default=32, help="common noises per image (each runs both solvers)")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--design", default="antithetic")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.images, args.noises, args.steps = 1, 4, 3
    torch.set_num_threads(args.threads)
    truths, source = ground_truths("fashion", args.images)
    make = {name: solver_factory("fashion", name, steps=args.steps) for name in ("dps", "dds")}
    rows, t0 = [], time.perf_counter()
    for j, truth in enumerate(truths):
        m = measure(truth, args.task, seed=[args.seed, j], **TASKS["fashion"][args.task])
        r = paired_estimate(
            {"DPS": make["dps"](m), "DDS": make["dds"](m)},
            [L1(m.truth), PSNR(m.truth)],
            budget=args.noises,
            design=args.design,
            seed=[args.seed, j],
            run=RunSettings(batch_size=16),
        )
        for stat in ("l1", "psnr"):
            c = r.contrast("DPS - DDS", stat)
            rows.append(
                {
                    "image": j,
                    "statistic": stat,
                    "DPS": r.arms[stat]["DPS"].estimate,
                    "DDS": r.arms[stat]["DDS"].estimate,
                    "difference": c.result.estimate,
                    "low": c.result.low,
                    "high": c.result.high,
                    "p_value": c.p_value,
                    "arm_correlation": c.arm_correlation,
                    "efficiency_vs_independent_mc": c.implied_efficiency,
                    "crn_efficiency": c.implied_crn_efficiency,
                }
            )
        print(markdown_table(pd.DataFrame(rows[-2:]).round(4)), flush=True)
    seconds = time.perf_counter() - t0
    table = pd.DataFrame(rows)
    out = args.out or (RESULTS / "quick" if args.quick else RESULTS)
    out.mkdir(parents=True, exist_ok=True)
    text = (
        f"# DPS vs DDS with common random numbers ({args.task}, Fashion-MNIST)\n\n"
        f"Command: `python benchmarks/dps_vs_dds.py {' '.join(argv if argv is not None else sys.argv[1:])}`\n"
        f"{args.images} ground truths {json.dumps(source)}, {args.noises} common noises per image "
        f"({args.design}), {args.steps} steps each, seed {args.seed}, CPU, {seconds:.0f} s.\n\n"
        "`efficiency_vs_independent_mc`: variance of the difference from independent plain-MC runs of both "
        "solvers at the same total budget, over this run's variance; `crn_efficiency`: the same against "
        "independent runs of the same design (the gain of common noise alone).\n\n"
        f"{markdown_table(table.round(4))}\n"
    )
    (out / "dps_vs_dds.md").write_text(text)
    (out / "dps_vs_dds.json").write_text(
        json.dumps(
            {"args": {k: str(v) for k, v in vars(args).items()}, "rows": json.loads(table.to_json(orient="records"))},
            indent=1,
        )
    )
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
