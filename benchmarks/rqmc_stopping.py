"""RQMC to a target precision: uqdiff's RQMCDoubling against qmcpy 2.4's CubQMCRepStudentT, side by side.

Both keep R = 16 independently scrambled Sobol' replicates (LMS + digital shift), start
at the same n_init points per replicate, and double the points until the Student-t
half-width of the replicate means is at most the target (95% level for both: qmcpy's
alpha = 0.05). For reference, uqdiff's other rule, TargetPrecision on SobolRQMC(n_init)
(a pilot of replicates, then more replicates at a fixed number of points), runs too.
Problems with closed-form truth, on Gaussian noise z in d dimensions:

* ``tanh``: tanh(w . z + 0.3), |w| = 1, d = 16;
* ``lognormal``: exp(0.5 w . z), d = 16, truth exp(1/8);
* ``tanh image``: the mean over 64 pixels of tanh(a_p . z + c_p), d = 64;
* ``indicator``: 1{w . z > 1}, d = 16, truth the normal tail.

Target half-width sigma / 80 (sigma: the statistic's standard deviation under plain MC).
Reported per rule: mean noises (model evaluations) to stop, coverage of the 95% interval
over ``--reps`` seeded runs, and the ratio of uqdiff's mean evaluations to qmcpy's.

    python benchmarks/rqmc_stopping.py                               # 100 repetitions, n_init 256, sigma / 80
    python benchmarks/rqmc_stopping.py --n-init 64 --divisor 1000 --skip-reference   # several doublings
    python benchmarks/rqmc_stopping.py --quick
"""

from __future__ import annotations

import argparse
import time
import warnings

import _common  # noqa: F401  (first: puts this checkout's uqdiff on the path)
import numpy as np
import pandas as pd
import qmcpy as qp
import torch
from _common import add_common_arguments, write_results
from scipy import stats

from uqdiff import RQMCDoubling, SobolRQMC, TargetPrecision, estimate
from uqdiff.designs.seeds import substream
from uqdiff.estimators.results import markdown_table
from uqdiff.estimators.settings import RunSettings

REPLICATES = 16
NODES, WEIGHTS = np.polynomial.hermite_e.hermegauss(80)  # E[f(N(0, 1))] = sum w f(x) / sqrt(2 pi)


def gauss_mean(f, mean: float, sd: float) -> float:
    """E[f(N(mean, sd^2))] by 80-point Gauss-Hermite quadrature."""
    return float(np.sum(WEIGHTS * f(mean + sd * NODES)) / np.sqrt(2 * np.pi))


def problems() -> dict[str, dict]:
    rng = np.random.default_rng(2024)
    w16 = np.cos(np.arange(16.0))
    w16 /= np.linalg.norm(w16)
    a64 = rng.normal(size=(64, 64)) / 8.0  # pixel p: a_p . z ~ N(0, |a_p|^2)
    c64 = np.linspace(-0.8, 0.8, 64)
    sd64 = np.linalg.norm(a64, axis=1)
    tanh_truth = gauss_mean(lambda x: np.tanh(x + 0.3), 0.0, 1.0)
    image_truth = float(np.mean([gauss_mean(np.tanh, c, s) for c, s in zip(c64, sd64)]))
    p_ind = float(stats.norm.sf(1.0))
    out = {
        "tanh": dict(d=16, f=lambda x: np.tanh(x @ w16 + 0.3), truth=tanh_truth),
        "lognormal": dict(d=16, f=lambda x: np.exp(0.5 * (x @ w16)), truth=float(np.exp(0.125))),
        "tanh image": dict(d=64, f=lambda x: np.tanh(x @ a64.T + c64).mean(axis=-1), truth=image_truth),
        "indicator": dict(d=16, f=lambda x: (x @ w16 > 1.0).astype(np.float64), truth=p_ind),
    }
    for spec in out.values():  # sigma under plain MC, from 2^18 draws (fixed seed)
        spec["sigma"] = float(np.std(spec["f"](np.random.default_rng(0).standard_normal((2**18, spec["d"])))))
    return out


class Generator:
    """The statistic's argument as a uqdiff generator: noise (B, d) -> values (B, 1)."""

    def __init__(self, f, d: int) -> None:
        self.f, self.noise_shape = f, (d,)

    def __call__(self, z: torch.Tensor) -> np.ndarray:
        return self.f(z.double().numpy())[:, None]


def run_uqdiff(spec: dict, rule, n_init: int, seed: list[int]) -> tuple[int, float, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = estimate(
            Generator(spec["f"], spec["d"]),
            {"s": lambda v: v[:, 0]},
            design=SobolRQMC(n_init),
            stopping=rule,
            seed=seed,
            run=RunSettings(batch_size=2**14, dtype=torch.float64),
        )
    return r.budget, r["s"].low, r["s"].high


def run_qmcpy(spec: dict, tol: float, n_init: int, seed: int) -> tuple[int, float, float]:
    dd = qp.DigitalNetB2(spec["d"], replications=REPLICATES, randomize="LMS DS", seed=seed)
    fun = qp.CustomFun(qp.Gaussian(dd), g=spec["f"])
    sc = qp.CubQMCRepStudentT(fun, abs_tol=tol, n_init=n_init, alpha=0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, data = sc.integrate()
    return int(data.n_total), float(data.comb_bound_low), float(data.comb_bound_high)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=100, help="seeded runs per problem and rule (default 100)")
    parser.add_argument("--n-init", type=int, default=256, help="points per replicate to start with (default 256)")
    parser.add_argument("--divisor", type=float, default=80.0, help="target half-width = sigma / divisor")
    parser.add_argument(
        "--skip-reference", action="store_true", help="leave out TargetPrecision (slow at tight targets)"
    )
    add_common_arguments(parser, "rqmc_stopping")
    args = parser.parse_args(argv)
    if args.quick:
        args.reps, args.divisor = 3, 20.0
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    rows = []
    for p, (name, spec) in enumerate(problems().items()):
        tol = spec["sigma"] / args.divisor
        rules = {
            "uqdiff RQMCDoubling": lambda s: run_uqdiff(
                spec, RQMCDoubling(halfwidth=tol, max_budget=2**26, replicates=REPLICATES), args.n_init, s
            ),
            "qmcpy CubQMCRepStudentT": lambda s: run_qmcpy(
                spec, tol, args.n_init, int(np.random.SeedSequence(s).generate_state(1)[0])
            ),
            "uqdiff TargetPrecision (adds replicates)": lambda s: run_uqdiff(
                spec, TargetPrecision(halfwidth=tol, max_budget=2**26), args.n_init, s
            ),
        }
        if args.skip_reference:
            rules.pop("uqdiff TargetPrecision (adds replicates)")
        for rname, run in rules.items():
            noises, hits, widths = [], 0, []
            for rep in range(args.reps):
                n, lo, hi = run(substream(args.seed, p, rep))
                noises.append(n)
                hits += lo <= spec["truth"] <= hi
                widths.append(hi - lo)
            rows.append(
                {
                    "problem": name,
                    "rule": rname,
                    "target": tol,
                    "mean evaluations": float(np.mean(noises)),
                    "SE evaluations": float(np.std(noises, ddof=1) / np.sqrt(args.reps)),
                    "coverage": hits / args.reps,
                    "SE": float(np.sqrt(0.95 * 0.05 / args.reps)),
                    "mean half-width / target": float(np.mean(widths) / 2 / tol),
                }
            )
            print(
                f"{name:>11} {rname:>42}: {np.mean(noises):10.0f} evaluations, coverage {hits / args.reps:.3f}",
                flush=True,
            )
    frame = pd.DataFrame(rows)
    qmcpy_evals = frame[frame.rule.str.startswith("qmcpy")].set_index("problem")["mean evaluations"]
    frame["evaluations / qmcpy"] = [r["mean evaluations"] / qmcpy_evals[r["problem"]] for _, r in frame.iterrows()]
    # the ratio's standard error (delta method, independent runs): how sure "no more than qmcpy" is
    qmcpy_se = frame[frame.rule.str.startswith("qmcpy")].set_index("problem")["SE evaluations"]
    frame["ratio SE"] = [
        np.nan
        if r["rule"].startswith("qmcpy")
        else r["evaluations / qmcpy"]
        * np.hypot(r["SE evaluations"] / r["mean evaluations"], qmcpy_se[r["problem"]] / qmcpy_evals[r["problem"]])
        for _, r in frame.iterrows()
    ]
    seconds = time.perf_counter() - start
    write_results(
        args.out,
        "rqmc_stopping_quick" if args.quick else f"rqmc_stopping_n{args.n_init}_tol{args.divisor:g}",
        title="RQMC stopping to a target precision: uqdiff vs qmcpy 2.4 (same n_init, 16 replicates)",
        intro=[
            f"{args.reps} seeded runs per problem and rule; n_init {args.n_init}; target sigma / {args.divisor:g}; "
            f"95% intervals; seed {args.seed}; {seconds:.0f} s.",
            "evaluations / qmcpy: mean model evaluations to stop, relative to qmcpy's CubQMCRepStudentT.",
        ],
        table=markdown_table(frame),
        data={"reps": args.reps, "n_init": args.n_init, "divisor": args.divisor, "rows": frame.to_dict("records")},
    )
    return frame


if __name__ == "__main__":
    main()
