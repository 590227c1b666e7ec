"""How subspace RQMC's efficiency grows with the Sobol' points per replicate (terrain model).

``subspace_rqmc((1, 128, 128), n, dims=16)`` at budget 512 for n = 4, 8, 16, 32:
efficiency sigma^2 / (budget x se^2), with sigma^2 the pooled MC variance of
``benchmarks/results/beyond_paper/terrain_800.json`` (4800 noises) and the F
interval of the ratio. This is why ``design="auto"`` tries RQMC candidates only
with n >= 16 points (``uqdiff.estimators.auto.MIN_POINTS``).

    python benchmarks/subspace_points.py            # about 4 minutes on 2 CPU cores
    python benchmarks/subspace_points.py --quick    # budget 8, n = 2 and 4: terrain_quick (seconds)
"""

from __future__ import annotations

import argparse
import json

import _common  # noqa: F401  (first: puts this checkout's uqdiff on the path)
import numpy as np
import pandas as pd
from _common import (
    RESULTS,
    add_common_arguments,
    beyond_paper_statistics,
    device_name,
    f_interval,
    load_model,
    write_results,
)

from uqdiff import estimate, subspace_rqmc
from uqdiff.estimators.results import markdown_table


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=int, default=512)
    parser.add_argument("--points", default="4,8,16,32")
    add_common_arguments(parser, "subspace_points")
    args = parser.parse_args(argv)
    if args.quick:
        args.budget, args.points = 8, "2,4"  # 4 and 2 replicates: 16 terrain calls
    pooled = json.loads((RESULTS / "beyond_paper" / "terrain_800.json").read_text())
    sigma2, df_sigma = np.array(pooled["sigma2"]), pooled["df_sigma"]
    generator, description = load_model("terrain")
    stats = beyond_paper_statistics()
    rows = []
    for n in [int(p) for p in args.points.split(",")]:
        design = subspace_rqmc(generator.noise_shape, n, dims=16)
        r = estimate(generator, stats, budget=args.budget, design=design, seed=[args.seed, n])
        for j, name in enumerate(stats):
            e = sigma2[j] / (args.budget * r[name].standard_error ** 2)
            df = r[name].n_groups - 1
            rows.append(
                {
                    "statistic": name,
                    "points n": n,
                    "replicates": r[name].n_groups,
                    "efficiency": e,
                    "95% interval": "{:.3g} .. {:.3g}".format(*f_interval(e, df_sigma, df)),
                }
            )
        print(n, flush=True)
    frame = pd.DataFrame(rows)
    print(frame.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    write_results(
        args.out,
        "terrain" + ("_quick" if args.quick else ""),
        title=f"Subspace RQMC efficiency against the points per replicate, {description}",
        intro=[
            f"Budget {args.budget} noises per row, seed [{args.seed}, n], {device_name('cpu')}. RQMC on the 16 lowest "
            "DCT frequencies, K-antithetic (k = n) on the complement. Efficiency = sigma^2 / (budget x se^2), "
            "sigma^2 pooled from the MC and antithetic runs of benchmarks/results/beyond_paper/terrain_800.json; "
            f"95% F interval (df {df_sigma} and replicates - 1).",
        ],
        table=markdown_table(frame),
        data={"budget": args.budget, "table": frame.to_dict(orient="records")},
    )
    return frame


if __name__ == "__main__":
    main()
