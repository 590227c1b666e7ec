"""Coverage of sequential stopping on an oracle with closed-form truth: two-stage rule vs the naive rule.

Oracle: GaussianDDIM in 4 dimensions (10 DDIM steps), statistics "second
moment" (smooth) and "share above 0.1" (an indicator average: discrete,
skewed). For each design, ``--reps`` independent runs of:

- the two-stage rule of uqdiff.estimators.stopping (the code estimate() runs): pilot of
  32 groups, main stage of ceil((t * 1.2 * s0 / target)^2) fresh groups,
  interval from the main stage with the pilot's spread;
- the naive rule: add groups after the same pilot and stop as soon as the
  running Student-t half-width is below the target.

The target is set per statistic so that the main stage averages about
``--mean-groups`` groups. Reported: coverage of the 95% intervals, mean groups
spent, and the share of runs that met the target.

    flock /tmp/uqdiff-cpu.lock python benchmarks/sequential_coverage.py
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
from scipy import stats

try:
    from uqdiff import Antithetic, SobolRQMC
except ImportError:  # run from a checkout without installing the package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from uqdiff import Antithetic, SobolRQMC
from uqdiff.designs import as_design
from uqdiff.estimators.accumulator import Moments
from uqdiff.estimators.engine import evaluate_groups
from uqdiff.estimators.results import markdown_table
from uqdiff.estimators.stopping import (
    DEFAULT_INFLATION,
    DEFAULT_PILOT_GROUPS,
    planned_groups,
    tolerances,
    two_stage_result,
)
from uqdiff.samplers import GaussianDDIM

THRESHOLD = 0.1
STATISTICS = {
    "second_moment": lambda x: (x**2).mean(dim=1),
    "share_above": lambda x: (x > THRESHOLD).to(torch.float64).mean(dim=1),
}


def naive_stop(means: np.ndarray, pilot: int, target: float, level: float) -> tuple[float, float, int]:
    """Stop at the first n >= pilot where the running t half-width is <= target: (mean, half-width, n)."""
    n = np.arange(1, len(means) + 1)
    csum, csq = np.cumsum(means), np.cumsum(means**2)
    mean = csum / n
    with np.errstate(invalid="ignore", divide="ignore"):
        var = np.maximum(csq - n * mean**2, 0) / (n - 1)
        half = stats.t.ppf(0.5 + level / 2, n - 1) * np.sqrt(var / n)
    ok = np.nonzero((n >= pilot) & (half <= target))[0]
    i = ok[0] if len(ok) else len(means) - 1
    return mean[i], half[i], i + 1


def run_design(design, oracle, truth, *, reps: int, mean_groups: int, seed: int, level: float = 0.95) -> list[dict]:
    pilot_n, cap = DEFAULT_PILOT_GROUPS, 4 * mean_groups
    kw = dict(noise_shape=oracle.noise_shape, batch_size=1 << 16, device=torch.device("cpu"), dtype=torch.float64)
    pilot = evaluate_groups(oracle, STATISTICS, design, np.arange(reps * pilot_n), seed=[seed, 0], **kw)
    main = evaluate_groups(oracle, STATISTICS, design, np.arange(reps * cap), seed=[seed, 1], **kw)
    q = stats.t.ppf(0.5 + level / 2, pilot_n - 1)
    target = {
        n: q * DEFAULT_INFLATION * float(np.std(m, ddof=1)) / math.sqrt(mean_groups) for n, (m, _) in pilot.items()
    }
    rows = {n: {"two_stage": [], "naive": []} for n in STATISTICS}
    for r in range(reps):
        p = {
            n: Moments.of(m[r * pilot_n : (r + 1) * pilot_n], w[r * pilot_n : (r + 1) * pilot_n])
            for n, (m, w) in pilot.items()
        }
        tol = tolerances(p, target_halfwidth=target, rel_tol=None)
        n_main = int(
            min(planned_groups(p, tol, confidence_level=level, interval_method="t", inflation=DEFAULT_INFLATION), cap)
        )
        for name, (m, w) in main.items():
            sl = slice(r * cap, r * cap + n_main)
            res = two_stage_result(
                Moments.of(m[sl], w[sl]),
                p[name],
                statistic=name,
                design=design.name,
                group_size=design.group_size,
                confidence_level=level,
                interval_method="t",
                inflation=DEFAULT_INFLATION,
            )
            rows[name]["two_stage"].append(
                (res.low <= truth[name] <= res.high, pilot_n + n_main, res.width / 2 <= target[name] * (1 + 1e-12))
            )
            # naive: the same pilot followed by the same fresh groups, stopping at the first narrow interval
            stream = np.concatenate([pilot[name][0][r * pilot_n : (r + 1) * pilot_n], m[r * cap : (r + 1) * cap]])
            est, half, used = naive_stop(stream, pilot_n, target[name], level)
            rows[name]["naive"].append((abs(est - truth[name]) <= half, used, half <= target[name]))
    out = []
    for name, by_rule in rows.items():
        for rule, runs in by_rule.items():
            cover, used, met = (np.array(v) for v in zip(*runs))
            out.append(
                {
                    "design": design.name,
                    "statistic": name,
                    "rule": rule,
                    "coverage": float(cover.mean()),
                    "mean_groups": float(used.mean()),
                    "target_met": float(met.mean()),
                    "reps": reps,
                }
            )
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=1000)
    parser.add_argument("--mean-groups", type=int, default=64)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "sequential_coverage"))
    parser.add_argument("--quick", action="store_true", help="20 runs per row (smoke test), written as *_quick")
    args = parser.parse_args(argv)
    if args.quick:
        args.reps = 20
    name = "sequential_coverage_quick" if args.quick else "sequential_coverage"
    torch.set_num_threads(2)
    rng = np.random.default_rng(7)
    oracle = GaussianDDIM(rng.uniform(-0.6, 0.6, size=(4,)), std=rng.uniform(0.2, 0.9, size=(4,)), num_steps=10)
    a, b = oracle.output_mean, oracle.output_std
    truth = {
        "second_moment": float(np.mean(a**2 + b**2)),
        "share_above": float(np.mean(stats.norm.sf((THRESHOLD - a) / b))),
    }
    rows = []
    for i, design in enumerate(["mc", Antithetic(), SobolRQMC(8)]):
        rows += run_design(as_design(design), oracle, truth, reps=args.reps, mean_groups=args.mean_groups, seed=100 + i)
    import pandas as pd

    frame = pd.DataFrame(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(
        json.dumps(
            {
                "benchmark": "sequential_coverage",
                "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "setup": {
                    "oracle": "GaussianDDIM, 4 dims, 10 steps",
                    "confidence_level": 0.95,
                    "reps": args.reps,
                    "pilot_groups": DEFAULT_PILOT_GROUPS,
                    "inflation": DEFAULT_INFLATION,
                    "target": f"main stage of about {args.mean_groups} groups on average",
                },
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )
    table = markdown_table(frame.drop(columns="reps"))
    (out / f"{name}.md").write_text(
        f"95% intervals, {args.reps} runs per row (pilot {DEFAULT_PILOT_GROUPS} groups, inflation {DEFAULT_INFLATION}).\n\n"
        + table
        + "\n"
    )
    print(table)


if __name__ == "__main__":
    main()
