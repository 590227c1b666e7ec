"""Within-run diagnostics on a known truth: the marginal variance and the implied efficiency with few groups.

Two problems whose pairs have correlation -0.6, so the true efficiency against MC is 1 / (1 - 0.6) = 2.5:

* ``normal``: pairs of the coupling Equicorrelated(2, -0.6) on x = w . z ~ N(0, 1), S = x (Var S = 1):
  the group means are normal, the setting the bias correction and the F interval assume;
* ``skewed``: antithetic pairs with S = x + c (x^2 - 1), c^2 = 1/8 (Var S = 1.25): the pair means
  c (x^2 - 1) are chi-square, strongly skewed.

For 4, 8, 16 and 64 pairs, ``--reps`` seeded ``uqdiff.estimate`` runs report:

* the mean of ``marginal_variance`` beside the 0.1 formula (within + k M2) / (n k - 1);
* the mean of ``implied_efficiency`` (bias-corrected by (n - 3) / (n - 1)) beside the raw ratio;
* the coverage of its F interval (``implied_efficiency_low`` .. ``_high``) of the truth 2.5.

    python benchmarks/within_run_diagnostics.py            # 2000 repetitions
"""

from __future__ import annotations

import argparse
import time
import warnings

import _common  # noqa: F401  (first: puts this checkout's uqdiff on the path)
import numpy as np
import pandas as pd
import torch
from _common import add_common_arguments, write_results

from uqdiff import Equicorrelated, estimate
from uqdiff.designs.seeds import substream
from uqdiff.estimators.results import markdown_table
from uqdiff.estimators.settings import RunSettings
from uqdiff.samplers import LinearGenerator

C = np.sqrt(1 / 8)
W = np.cos(np.arange(8.0))[None, :]
GEN = LinearGenerator(np.zeros(1), W / np.linalg.norm(W))
TRUE_EFFICIENCY = 2.5
#: name -> (statistic, design, true Var S)
PROBLEMS = {
    "normal": ({"s": lambda x: x[:, 0].double()}, Equicorrelated(2, -0.6), 1.0),
    "skewed": ({"s": lambda x: x[:, 0].double() + C * (x[:, 0].double() ** 2 - 1)}, "antithetic", 1.25),
}


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=2000, help="seeded runs per group count (default 2000)")
    add_common_arguments(parser, "diagnostics")
    args = parser.parse_args(argv)
    if args.quick:
        args.reps = 50
    warnings.simplefilter("ignore", UserWarning)  # the skew warning is expected here (S has a chi-square part)
    start = time.perf_counter()
    rows = []
    for problem, (stat, design, variance) in PROBLEMS.items():
        for pairs in (4, 8, 16, 64):
            marginal, old_marginal, implied, raw, covered = [], [], [], [], 0
            for rep in range(args.reps):
                seed = substream(args.seed, len(problem), pairs, rep)
                r = estimate(
                    GEN, stat, budget=2 * pairs, design=design, seed=seed, run=RunSettings(dtype=torch.float64)
                )["s"]
                n, k = r.n_groups, 2
                m2 = r.standard_error**2 * n * (n - 1)
                within = (r.marginal_variance - m2 / (n - 1)) * n * k
                marginal.append(r.marginal_variance)
                old_marginal.append((within + k * m2) / (n * k - 1))
                implied.append(r.implied_efficiency)
                raw.append(r.implied_efficiency * (n - 1) / (n - 3))
                covered += r.implied_efficiency_low <= TRUE_EFFICIENCY <= r.implied_efficiency_high
            rows.append(
                {
                    "problem": problem,
                    "pairs": pairs,
                    "true Var S": variance,
                    "marginal variance": float(np.mean(marginal)),
                    "0.1 formula": float(np.mean(old_marginal)),
                    "implied efficiency (truth 2.5)": float(np.nanmean(implied)),
                    "uncorrected ratio": float(np.nanmean(raw)),
                    "F interval coverage": covered / args.reps,
                }
            )
            print(rows[-1], flush=True)
    frame = pd.DataFrame(rows)
    seconds = time.perf_counter() - start
    write_results(
        args.out,
        "diagnostics_quick" if args.quick else "diagnostics",
        title="Within-run diagnostics with few groups (antithetic pairs, true efficiency 2.5)",
        intro=[f"{args.reps} seeded runs per row, seed {args.seed}; {seconds:.0f} s. Means over the runs."],
        table=markdown_table(frame),
        data={"reps": args.reps, "seed": args.seed, "rows": frame.to_dict(orient="records")},
    )
    return frame


if __name__ == "__main__":
    main()
