"""RQMC on gradient directions (active subspace) vs the DCT subspace, Fashion-MNIST DDPM (DDIM 50).

``gradient_directions`` takes 64 pilot noises through the sampler with autograd on
(``DiffusersSampler.run``) and keeps the 16 leading directions of the averaged
outer product of the pixel mean's gradient; ``subspace_rqmc(basis=...)`` then runs
25 replicates of 16 Sobol' points on them, K-antithetic on the complement, at
budget 400 for 3 seeds. Efficiency = sigma^2 / (budget x se^2) with sigma^2 pooled
from ``benchmarks/results/beyond_paper/fashion_400.json``, beside the DCT subspace's
figure there. The pilot's cost is reported in forward-call equivalents (its wall
time over one forward call's), and the efficiency of one run of 400 with that
cost added to the budget.

    python benchmarks/gradient_subspace.py          # about 5 minutes on 2 CPU cores
    python benchmarks/gradient_subspace.py --quick  # DDIM 2 steps, pilot 16, budget 64: fashion_quick
"""

from __future__ import annotations

import argparse
import json
import time

import _common  # noqa: F401  (first: puts this checkout's uqdiff on the path)
import numpy as np
import pandas as pd
import torch
from _common import (
    RESULTS,
    add_common_arguments,
    beyond_paper_statistics,
    device_name,
    f_interval,
    load_model,
    write_results,
)

from uqdiff import estimate, gradient_directions, subspace_rqmc
from uqdiff.estimators.results import markdown_table


class Differentiable:
    """The Fashion-MNIST generator with autograd on (the sampler's ``run`` instead of its no-grad call)."""

    def __init__(self, generator) -> None:
        self.generator, self.noise_shape = generator, generator.noise_shape

    def __call__(self, noise: torch.Tensor) -> torch.Tensor:
        return self.generator.readout(self.generator.sampler.run(noise))


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=int, default=400)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--pilot", type=int, default=64, help="gradient pilot noises (default 64)")
    add_common_arguments(parser, "gradient_subspace")
    args = parser.parse_args(argv)
    steps = 50
    if args.quick:
        args.budget, args.seeds, args.pilot, steps = 64, "0", 16, 2  # the pilot needs a noise per direction
    generator, description = load_model("fashion", steps=steps)
    stats = beyond_paper_statistics()
    pooled = json.loads((RESULTS / "beyond_paper" / "fashion_400.json").read_text())
    sigma2, df_sigma = np.array(pooled["sigma2"]), pooled["df_sigma"]
    dct = {row["statistic"]: row["efficiency"] for row in pooled["table"] if row["estimator"] == "subspace"}
    probe = torch.randn(16, *generator.noise_shape, generator=torch.Generator().manual_seed(1))
    t0 = time.perf_counter()
    generator(probe)
    forward = (time.perf_counter() - t0) / 16
    t0 = time.perf_counter()
    basis = gradient_directions(
        Differentiable(generator), stats["mean"], dims=16, budget=args.pilot, batch_size=16, seed=[args.seed, 99]
    )
    pilot_seconds = time.perf_counter() - t0
    pilot_cost = pilot_seconds / forward  # in forward-call equivalents
    design = subspace_rqmc(generator.noise_shape, 2 ** int(np.log2(args.budget // 25)), basis=basis)
    se2 = []
    for s in [int(x) for x in args.seeds.split(",")]:
        r = estimate(generator, stats, budget=args.budget, design=design, seed=[s])
        se2.append([r[name].standard_error ** 2 for name in stats])
        df = r["mean"].n_groups - 1
    se2 = np.mean(se2, axis=0)
    df_total = df * len(args.seeds.split(","))
    rows = []
    for j, name in enumerate(stats):
        e = sigma2[j] / (args.budget * se2[j])
        rows.append(
            {
                "statistic": name,
                "gradient subspace": e,
                "95% interval": "{:.3g} .. {:.3g}".format(*f_interval(e, df_sigma, df_total)),
                "with the pilot's cost": e * args.budget / (args.budget + pilot_cost),
                "DCT subspace (beyond_paper)": dct.get(name),
            }
        )
    frame = pd.DataFrame(rows)
    print(frame.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    print(f"pilot: {pilot_seconds:.0f} s = {pilot_cost:.0f} forward calls")
    write_results(
        args.out,
        "fashion" + ("_quick" if args.quick else ""),
        title=f"RQMC on gradient directions vs the DCT subspace, {description}",
        intro=[
            f"Budget {args.budget} per seed, seeds {args.seeds}, gradient pilot {args.pilot} noises (16 directions of "
            f"the pixel mean's gradient), {device_name('cpu')}. The pilot took {pilot_seconds:.0f} s, "
            f"{pilot_cost:.0f} forward-call equivalents. Efficiency = sigma^2 / (budget x se^2), sigma^2 pooled in "
            "benchmarks/results/beyond_paper/fashion_400.json; se^2 pooled over seeds; F interval. 'with the "
            "pilot's cost': one run of the budget with the pilot added to it (directions reused across runs cost "
            "nothing more).",
        ],
        table=markdown_table(frame),
        data={"pilot_seconds": pilot_seconds, "pilot_cost": pilot_cost, "table": frame.to_dict(orient="records")},
    )
    return frame


if __name__ == "__main__":
    main()
