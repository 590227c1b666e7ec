"""Table 2 again, with the estimators beyond the paper: noise control variates, subspace RQMC, design="auto".

For each model, seed and design, one real run of ``uqdiff.estimate`` at the
same budget records every noise's statistics and DCT noise features (the
generator is wrapped to keep them, in the order ``estimate`` draws them).
From those runs:

* plain designs: MC, antithetic (AMC), K-antithetic (8), RQMC on the whole noise
  (25 replicates) and RQMC on the 16 lowest DCT frequencies with K-antithetic on
  the complement (``subspace_rqmc``, same R x n);
* "+ CV": the same run with noise control variates exactly as
  ``estimate(..., control_variates=ControlVariates())`` computes them on the same
  noise (the first 20 % of groups are the pilot that fits the coefficients, the rest
  the estimate; ``tests/test_control_variates.py`` checks the two agree);
* ``design="auto"``: its own run at the same budget, pilot included;
* Fashion-MNIST only: the two-fidelity estimator with a 10-step DDIM control variate
  (``estimate_two_fidelity``), budget counted in 50-step calls, a 10-step call priced at the
  cost ratio measured side by side on one batch before the runs.

Efficiency = sigma^2 / (budget x variance of the estimate): plain MC's variance at
the same budget over the estimator's. sigma^2 pools every MC and antithetic noise of
all seeds (each is N(0, I)); the estimator's variance pools its seeds (se^2 averaged,
df = sum of groups - 1), which gives an F interval for each efficiency and for each
ratio of two. Per-seed values are listed too.

    python benchmarks/beyond_paper.py --model terrain --budget 800 --seeds 0,1,2
    python benchmarks/beyond_paper.py --model fashion --budget 400 --seeds 0,1,2
    python benchmarks/beyond_paper.py --model fashion-stochastic --budget 400 --seeds 0,1,2
    python benchmarks/beyond_paper.py --model fashion --quick         # a smoke test (seconds)

Raw per-noise records are cached under ``<out>/raw`` (``benchmarks/results/beyond_paper/raw``) so the
analysis reruns without the models (``--analyze-only``).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import _common  # noqa: F401  (first: puts this checkout's uqdiff on the path)
import numpy as np
import pandas as pd
import torch
from _common import add_common_arguments, beyond_paper_statistics, device_name, f_interval, load_model, write_results

from uqdiff import estimate
from uqdiff.designs import IID, Antithetic, KAntithetic, SobolRQMC
from uqdiff.designs.features import DCTFeatures
from uqdiff.designs.subspace import subspace_rqmc
from uqdiff.estimators.control_variates import ControlVariates, fit_control, pilot_groups
from uqdiff.estimators.results import markdown_table
from uqdiff.estimators.settings import RunSettings

#: Paper 001, CIFAR-10, budget 3200: efficiencies of AMC, K-antithetic (8) and RQMC 25 x 128 (table 2 / 11).
PAPER = {
    "mean": {"amc": 27.12, "ka8": 27.34, "rqmc": 25.71},
    "contrast": {"amc": 22.05, "ka8": 20.37, "rqmc": 24.57},
    "centroid": {"amc": 9.73, "ka8": 13.94, "rqmc": 8.17},
}
PAPER_DESIGNS = ("amc", "ka8", "rqmc")


class Recorder:
    """The generator, recording each noise's statistics and features in the order it is called.

    Opts out of estimate's repeat check (one extra call on the first noise) so every record is a drawn noise.
    """

    repeat_check = False

    def __init__(self, generator, statistics: dict, features) -> None:
        self.generator, self.statistics, self.features = generator, statistics, features
        self.noise_shape = generator.noise_shape
        self.device = getattr(generator, "device", torch.device("cpu"))
        self.values, self.feats = [], []

    def __call__(self, noise: torch.Tensor) -> torch.Tensor:
        images = self.generator(noise)
        self.values.append(np.stack([np.asarray(s(images), dtype=np.float64) for s in self.statistics.values()], 1))
        self.feats.append(self.features(noise).numpy())
        return images


def designs_for(model: str, noise_shape, budget: int, quick: bool) -> dict:
    """Label -> design at this budget (RQMC: 25 replicates of budget / 25 rounded down to a power of two)."""
    n = 2 ** int(math.log2(max(2, budget // 25)))
    if model == "fashion-stochastic":
        return {"mc": IID(), "amc": Antithetic(), "subspace": subspace_rqmc(noise_shape, n, dims=4)}
    out = {"mc": IID(), "amc": Antithetic(), "ka8": KAntithetic(8), "rqmc": SobolRQMC(n)}
    out["subspace"] = subspace_rqmc(noise_shape, n, dims=16)
    return out


def run_one(generator, stats: dict, label: str, design, budget: int, seed: int, batch_size: int) -> dict:
    """One real estimate run; its per-noise records, plus the result."""
    features = DCTFeatures()
    recorder = Recorder(generator, stats, features)
    k = design.group_size
    run_budget = budget // k * k
    start = time.perf_counter()
    result = estimate(
        recorder, stats, budget=run_budget, design=design, seed=[seed], run=RunSettings(batch_size=batch_size)
    )
    seconds = time.perf_counter() - start
    y, f = np.concatenate(recorder.values), np.concatenate(recorder.feats)
    if len(y) != run_budget:
        raise RuntimeError(f"recorded {len(y)} noises for a budget of {run_budget}")
    return {"y": y, "f": f, "k": k, "seconds": seconds, "result": json.loads(result.to_json())}


def run_auto(generator, stats: dict, budget: int, seed: int, batch_size: int, target) -> dict:
    """design="auto" weighing every statistic equally (target None) or one statistic."""
    from uqdiff.estimators.auto import AutoDesign

    weights = {name: 1.0 for name in stats} if target is None else target
    start = time.perf_counter()
    design = AutoDesign(target=weights)
    result = estimate(
        generator, stats, budget=budget, design=design, seed=[seed], run=RunSettings(batch_size=batch_size)
    )
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "result": json.loads(result.to_json()), "config": result.config["auto"]}


def cost_ratio(generator, cheap, batch_size: int, repeats: int = 3) -> float:
    """Time of a cheap call over a full one, measured side by side on the same noises (median of interleaved runs).

    Timed here rather than inside the pilot: on a shared machine a few pilot batches can catch
    the other jobs' load and misprice the cheap calls (seen: 0.07 instead of about 0.2).
    """
    noise = torch.randn(batch_size, *generator.noise_shape, generator=torch.Generator().manual_seed(0))
    ratios = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        generator(noise)
        t1 = time.perf_counter()
        cheap(noise)
        t2 = time.perf_counter()
        ratios.append((t2 - t1) / (t1 - t0))
    return float(np.median(ratios))


def run_two_fidelity(generator, cheap, stats: dict, design, budget: int, seed: int, batch_size: int, w: float) -> dict:
    from uqdiff.estimators.multifidelity import estimate_two_fidelity

    start = time.perf_counter()
    result = estimate_two_fidelity(
        generator,
        cheap,
        stats,
        budget=budget,
        design=design,
        seed=[seed],
        cost_ratio=w,
        run=RunSettings(batch_size=batch_size),
    )
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "cost_ratio": w, "result": json.loads(result.to_json())}


def controlled(y: np.ndarray, f: np.ndarray, k: int, share: float = ControlVariates().pilot_share):
    """Group means of the run's statistics adjusted as estimate(control_variates=...) does: (adjusted, pilot groups)."""
    n = len(y) // k
    gy, gf = y.reshape(n, k, -1).mean(1), f.reshape(n, k, -1).mean(1)
    p = pilot_groups(n, share)
    out = np.empty((n - p, gy.shape[1]))
    for j in range(gy.shape[1]):
        beta = fit_control(gy[:p, j], gf[:p]).coefficients
        out[:, j] = gy[p:, j] - gf[p:] @ beta
    return out, p


def variance_of_estimate(groups: np.ndarray) -> tuple[np.ndarray, int]:
    """se^2 per statistic and its df from iid group means."""
    return groups.var(axis=0, ddof=1) / len(groups), len(groups) - 1


def analyse(model: str, budget: int, seeds: list[int], labels: list[str], stat_names: list[str], raw: Path):
    """The efficiency table from the cached runs."""
    runs = {
        (label, s): np.load(raw / f"{model}_{budget}_{label}_{s}.npz", allow_pickle=False)
        for label in labels
        for s in seeds
        if (raw / f"{model}_{budget}_{label}_{s}.npz").exists()
    }
    pool = [runs[key]["y"] for key in runs if key[0] in ("mc", "amc")]
    sigma2 = np.concatenate(pool).var(axis=0, ddof=1)
    df_sigma = sum(len(p) for p in pool) - 1
    estimators = {}  # name -> list over seeds of (se2 vector, df, budget spent)
    for (label, s), r in sorted(runs.items(), key=lambda kv: (labels.index(kv[0][0]), kv[0][1])):
        y, f, k = r["y"], r["f"], int(r["k"])
        se2, df = variance_of_estimate(y.reshape(len(y) // k, k, -1).mean(1))
        estimators.setdefault(label, []).append((se2, df, len(y)))
        adj, _ = controlled(y, f, k)
        se2, df = variance_of_estimate(adj)
        estimators.setdefault(label + "+cv", []).append((se2, df, len(y)))
    for extra in ("auto", "auto-std", "tf-mc", "tf-amc"):
        for s in seeds:
            path = raw / f"{model}_{budget}_{extra}_{s}.json"
            if path.exists():
                rec = json.loads(path.read_text())
                res = rec["result"]["results"]
                se = np.array([res[name]["standard_error"] for name in stat_names])
                df = min(res[name]["df"] for name in stat_names)
                spent = rec["result"].get("budget") or rec["result"].get("total_cost") or budget
                estimators.setdefault(extra, []).append((se**2, df, float(spent)))
    rows, eff = [], {}
    for name, parts in estimators.items():
        se2 = np.mean([p[0] for p in parts], axis=0)
        df = sum(p[1] for p in parts)
        spent = np.mean([p[2] for p in parts])
        e = sigma2 / (spent * se2)
        eff[name] = (e, df)
        lo, hi = f_interval(e, df_sigma, df)
        per_seed = [sigma2 / (p[2] * p[0]) for p in parts]
        for j, stat in enumerate(stat_names):
            rows.append(
                {
                    "statistic": stat,
                    "estimator": name,
                    "seeds": len(parts),
                    "efficiency": e[j],
                    "95% interval": f"{lo[j]:.3g} .. {hi[j]:.3g}",
                    "per seed": ", ".join(f"{v[j]:.3g}" for v in per_seed),
                    "paper CIFAR-10": PAPER.get(stat, {}).get(name, ""),
                }
            )
    frame = pd.DataFrame(rows).sort_values(["statistic", "efficiency"], ascending=[True, False], kind="stable")
    goals = {}
    for j, stat in enumerate(stat_names):
        paper_best = max((n for n in PAPER_DESIGNS if n in eff), key=lambda n: eff[n][0][j], default=None)
        best = max(eff, key=lambda n: eff[n][0][j])
        if paper_best is None:
            continue
        factor = eff[best][0][j] / eff[paper_best][0][j]
        b_df, p_df = eff[best][1], eff[paper_best][1]
        goals[stat] = {
            "best": best,
            "best_efficiency": eff[best][0][j],
            "paper_best": paper_best,
            "paper_best_efficiency": eff[paper_best][0][j],
            "factor": factor,
            "factor_low": f_interval(factor, p_df, b_df)[0],
            "factor_high": f_interval(factor, p_df, b_df)[1],
            "auto": None if "auto" not in eff else eff["auto"][0][j],
        }
        if "subspace" in eff and "rqmc" in eff:
            goals[stat]["subspace_over_rqmc"] = eff["subspace"][0][j] / eff["rqmc"][0][j]
        if "subspace" in eff and "amc" in eff:
            goals[stat]["subspace_over_amc"] = eff["subspace"][0][j] / eff["amc"][0][j]
    return frame, goals, {"sigma2": sigma2, "df_sigma": df_sigma}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("terrain", "fashion", "fashion-stochastic"), default="terrain")
    parser.add_argument("--budget", type=int, default=800, help="noises (model calls) per estimator and seed")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--analyze-only", action="store_true", help="report from the cached runs only")
    parser.add_argument("--only", default=None, help="comma-separated labels to run (default all)")
    add_common_arguments(parser, "beyond_paper")
    args = parser.parse_args(argv)
    if args.quick:
        args.budget, args.seeds = 200, "0,1"
    if args.threads:
        torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    stats = beyond_paper_statistics()
    if args.model == "fashion-stochastic":
        from uqdiff.models.fashion import FashionMNISTGenerator

        steps = 3 if args.quick else 25
        generator = FashionMNISTGenerator(None, eta=1.0, num_inference_steps=steps)
        noise_shape = generator.noise_shape
        description = (
            f"Fashion-MNIST DDPM, DDIM eta=1 (stochastic), {steps} steps: noise "
            f"{'x'.join(map(str, noise_shape))} = {math.prod(noise_shape)} dims"
        )
    else:
        steps = 2 if args.quick else 50
        generator, description = load_model(args.model, steps=steps)
        noise_shape = generator.noise_shape
    designs = designs_for(args.model, noise_shape, args.budget, args.quick)
    labels = list(designs)
    extra = ["auto", "auto-std"] if args.model != "fashion-stochastic" else []
    if args.model == "fashion":
        extra += ["tf-mc", "tf-amc"]
    todo = set((args.only or ",".join(labels + extra)).split(","))
    raw = args.out / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    print(f"{description}; budget {args.budget}; seeds {seeds}; {device_name('cpu')}", flush=True)
    cheap = None
    for s in seeds:
        for label, design in designs.items():
            path = raw / f"{args.model}_{args.budget}_{label}_{s}.npz"
            if args.analyze_only or label not in todo or path.exists():
                continue
            rec = run_one(generator, stats, label, design, args.budget, s, args.batch_size)
            np.savez_compressed(path, y=rec["y"], f=rec["f"], k=rec["k"], seconds=rec["seconds"])
            print(f"seed {s} {label}: {rec['seconds']:.0f} s", flush=True)
        for label in extra:
            path = raw / f"{args.model}_{args.budget}_{label}_{s}.json"
            if args.analyze_only or label not in todo or path.exists():
                continue
            if label.startswith("auto"):
                target = None if label == "auto" else label.split("-", 1)[1]
                rec = run_auto(generator, stats, args.budget, s, args.batch_size, target)
            else:
                if cheap is None:
                    cheap, _ = load_model("fashion", steps=1 if args.quick else 10)
                    w = cost_ratio(generator, cheap, args.batch_size)
                    print(f"cost ratio of the cheap sampler, measured side by side: {w:.3f}", flush=True)
                d = IID() if label == "tf-mc" else Antithetic()
                rec = run_two_fidelity(generator, cheap, stats, d, args.budget, s, args.batch_size, w)
            path.write_text(json.dumps(rec, default=str))
            print(f"seed {s} {label}: {rec['seconds']:.0f} s", flush=True)
    frame, goals, pooled = analyse(args.model, args.budget, seeds, labels, list(stats), raw)
    print(frame.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    print(json.dumps(goals, indent=1, default=float))
    name = f"{args.model}_{args.budget}" + ("_quick" if args.quick else "")
    write_results(
        args.out,
        name,
        title=f"Beyond the paper's estimators on the {description}",
        intro=[
            f"Budget {args.budget} noises per estimator and seed, seeds {seeds}, batch size {args.batch_size}, "
            f"{device_name('cpu')}.",
            "Efficiency = sigma^2 / (budget x variance of the estimate), i.e. plain MC's variance at the same "
            "budget over the estimator's; sigma^2 pools every noise of the MC and antithetic runs "
            f"(df {pooled['df_sigma']}); the estimator's variance pools its seeds; the 95% interval is the F "
            "interval of that ratio. '+cv': noise control variates (DCT: 4 lowest coefficients, their squares, "
            "every octave's energy), pilot = first 20% of the groups, as estimate(control_variates=...) does; "
            "'auto': estimate(design=AutoDesign(target=every statistic, equal weights)), pilot included; 'auto-std': the same with target='std'; 'tf-*': two-fidelity estimator with a 10-step "
            "control variate, budget in 50-step calls at the measured cost. RQMC: 25 replicates; 'subspace': "
            "RQMC on the 16 lowest DCT frequencies, K-antithetic on the complement, same R x n.",
        ],
        table=markdown_table(frame),
        data={
            "goals": goals,
            "table": frame.to_dict(orient="records"),
            "sigma2": pooled["sigma2"].tolist(),
            "df_sigma": pooled["df_sigma"],
        },
        notes=[
            "Paper CIFAR-10 column: paper 001, budget 3200 (table 2 for AMC and K-antithetic, table 11 for RQMC "
            "25 x 128).",
        ],
    )


if __name__ == "__main__":
    main()
