"""Bias audits on the real models, with common noise + antithetic pairs; results in benchmarks/results/audit/.

    python benchmarks/audit_examples.py fashion   # 10 labels x 160 noises, DDIM 20 steps (1600 model calls)
    python benchmarks/audit_examples.py terrain   # pilot 4 x 16, then 4 difficulties x 128 noises (576 calls)
    python benchmarks/audit_examples.py --quick   # both: 8 noises per condition, terrain pilot 2, DDIM 2 steps: *_quick

Fashion-MNIST DDPM: for each class label, how often the classifier returns
each class (a confusion matrix with simultaneous intervals), and every
difference between labels with Holm. A pixel map of the mean-image
difference between two labels shows pointwise against simultaneous bands.
Terrain: P(max slope > threshold) at four difficulty levels, all pairwise
differences with Holm and the linear trend over the levels; the threshold
is the mean max slope (over the levels) of a separate pilot run (its own seed), so the
proportions are not trivial and the pilot does not bias the audit.

Model outputs are cached by noise under --cache (default /tmp/uqdiff-audit-cache):
re-running the analysis (tables, plots) costs no model calls. The cache knows
only the noise, not the model's settings, so --quick (fewer DDIM steps) uses a
fresh temporary cache unless --cache is given.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (first: puts this checkout's uqdiff on the path)
import numpy as np
import torch
from _common import add_common_arguments

from uqdiff.estimators.audit import audit
from uqdiff.estimators.paired import CommonNoise, paired_estimate
from uqdiff.estimators.simultaneous import group_means, holm_pixels, simultaneous_bands
from uqdiff.statistics import MaxSlope, PixelMap

SEED = 2026
STEPS = 20  # DDIM steps of the Fashion-MNIST DDPM
#: --quick: noises per condition (fashion, terrain), terrain pilot noises per level, DDIM steps.
QUICK = {"fashion": 8, "terrain": 8, "pilot": 2, "steps": 2}


class Cached:
    """A generator whose outputs are kept on disk by the bytes of each noise, so analyses can be re-run."""

    def __init__(self, generator, path: Path) -> None:
        self.generator, self.path = generator, path
        self.noise_shape, self.device = generator.noise_shape, generator.device
        self.store: dict[str, np.ndarray] = dict(np.load(path)) if path.is_file() else {}
        self.model_calls = 0
        self.seconds = 0.0

    def __call__(self, noise: torch.Tensor) -> torch.Tensor:
        keys = [hashlib.sha1(row.cpu().numpy().tobytes()).hexdigest() for row in noise]
        todo = [i for i, k in enumerate(keys) if k not in self.store]
        if todo:
            t0 = time.perf_counter()
            out = self.generator(noise[todo]).detach().cpu().numpy()
            self.seconds += time.perf_counter() - t0
            self.model_calls += len(todo)
            self.store.update({keys[i]: o for i, o in zip(todo, out)})
            self.save()  # a run cut short keeps what it computed
        return torch.from_numpy(np.stack([self.store[k] for k in keys]))

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(self.path, **self.store)


def efficiency_summary(frame) -> dict[str, float]:
    """Median and range of the efficiency columns over rows where it is defined (finite, positive)."""
    out = {}
    for col in ("implied_efficiency", "implied_crn_efficiency", "implied_design_efficiency"):
        if col in frame:
            v = frame[col].to_numpy(dtype=float)
            v = v[np.isfinite(v) & (v > 0)]
            if len(v):
                out[col] = {"median": float(np.median(v)), "min": float(v.min()), "max": float(v.max()), "rows": len(v)}
    return out


def fmt_eff(summary: dict) -> str:
    return "; ".join(
        f"{k}: median {v['median']:.3g} (range {v['min']:.3g} to {v['max']:.3g}, {v['rows']} rows)"
        for k, v in summary.items()
    )


def fashion(cache: Path, budget: int, *, root: Path, seed: int = SEED, steps: int = STEPS, suffix: str = "") -> dict:
    from uqdiff.models.classifier import load_fashion_classifier
    from uqdiff.models.fashion import FashionMNISTGenerator
    from uqdiff.models.fashion_mnist import FASHION_MNIST_CLASSES as NAMES

    out = root / "fashion"
    out.mkdir(parents=True, exist_ok=True)
    gens = {
        NAMES[c]: Cached(FashionMNISTGenerator(c, num_inference_steps=steps), cache / f"fashion_{c}.npz")
        for c in range(10)
    }
    clf = load_fashion_classifier()

    def verdict(images):
        """One-hot of the classifier's class (B, 10)."""
        with torch.no_grad():
            return torch.nn.functional.one_hot(clf(images.float()).argmax(dim=1), 10)

    t0 = time.perf_counter()
    r = audit(gens, verdict, budget=budget, design="antithetic", attribute_names=list(NAMES), seed=seed)
    # pixel map of a mean-image difference between two often-confused labels, same noise (cache hits)
    a, b = "Shirt", "T-shirt/top"
    pair = CommonNoise({a: gens[a], b: gens[b]})
    unit = PixelMap()
    diff_map = lambda x: unit(x[:, 0]) - unit(x[:, 1])
    res, means = group_means(pair, diff_map, budget=budget, design="antithetic", seed=seed)
    bands = {
        m: simultaneous_bands(res, method=m, group_means=means if m == "max-t" else None, seed=seed)
        for m in ("max-t", "bonferroni")
    }
    holm = holm_pixels(res)
    wall = time.perf_counter() - t0
    for g in gens.values():
        g.save()
    calls = sum(g.model_calls for g in gens.values())
    model_seconds = sum(g.seconds for g in gens.values())

    fig = r.plot(
        max_differences=25,
        title=f"Fashion-MNIST DDPM (DDIM {steps} steps): classifier verdict per label, "
        f"{budget} common antithetic noises per label",
    )
    fig.savefig(out / f"audit{suffix}.png", dpi=130)
    bfig = bands["max-t"].plot(
        title=f"E[{a}] - E[{b}] pixel map (28x28, [0,1] scale), {budget} common antithetic "
        f"noises: pointwise c={bands['max-t'].pointwise_critical_value:.2f}, max-t "
        f"c={bands['max-t'].critical_value:.2f}, Bonferroni c={bands['bonferroni'].critical_value:.2f}"
    )
    bfig.savefig(out / f"pixel_bands{suffix}.png", dpi=130)

    off = r.proportions[r.proportions.condition != r.proportions.attribute]
    confused = off[off.estimate >= 0.05].sort_values("estimate", ascending=False)
    diag = r.proportions[r.proportions.condition == r.proportions.attribute]
    n_pixels = int(np.size(res.estimate))
    pixel_counts = {
        "pixels": n_pixels,
        "pointwise_excludes_0": int(bands["max-t"].excludes(0.0, simultaneous=False).sum()),
        "max_t_excludes_0": int(bands["max-t"].excludes(0.0).sum()),
        "bonferroni_excludes_0": int(bands["bonferroni"].excludes(0.0).sum()),
        "holm_rejects": int(holm.sum()),
        "critical_values": {
            "pointwise": bands["max-t"].pointwise_critical_value,
            "max-t": bands["max-t"].critical_value,
            "bonferroni": bands["bonferroni"].critical_value,
        },
    }
    summary = {
        "budget_noises_per_label": budget,
        "model_calls_total": r.generator_calls,
        "model_calls_this_run": calls,
        "model_seconds_this_run": model_seconds,
        "analysis_wall_seconds": wall,
        "design": r.design,
        "sampler": f"DDIM, {steps} steps, eta 0",
        "seed": seed,
        "efficiency_differences": efficiency_summary(r.differences),
        "efficiency_proportions": efficiency_summary(r.proportions),
        "holm_rejections": int(r.differences.reject.sum()),
        "differences": len(r.differences),
        "pixel_map": pixel_counts,
    }
    (out / f"audit{suffix}.json").write_text(
        json.dumps({"summary": summary, "audit": r.to_dict()}, indent=1, default=float)
    )
    lines = [
        "# Fashion-MNIST DDPM bias audit: classifier verdict per class label",
        "",
        f"Script: `benchmarks/audit_examples.py fashion`. Design: common noise across the 10 labels and antithetic "
        f"pairs, {budget} noises per label ({r.generator_calls} model calls, DDIM {steps} steps, eta 0; "
        f"{model_seconds:.0f} s of model time in the run that filled the cache). Seed {seed}.",
        f"Proportion intervals: Wilson score on n_eff = p(1-p)/se^2 capped at the image count (t quantile, "
        f"{budget // 2 - 1} df); simultaneous = Bonferroni over the 100 cells. Differences: Newcombe hybrid score "
        "intervals with the common-noise correlation, p-values by inverting them; Holm over all "
        f"{len(r.differences)} (label pair, verdict) differences; {summary['holm_rejections']} rejected at 5%.",
        "",
        "## Efficiency of common noise + antithetic pairs against independent MC (same total budget)",
        "",
        f"- differences between labels: {fmt_eff(summary['efficiency_differences'])}",
        f"- per-label proportions (antithetic alone): {fmt_eff(summary['efficiency_proportions'])}",
        "",
        "## Agreement: P(classifier returns the label)",
        "",
        _table(diag[["condition", "estimate", "low", "high", "low_simultaneous", "high_simultaneous"]]),
        "",
        "## Confusions: off-diagonal cells with estimate >= 0.05",
        "",
        "A cell whose simultaneous lower bound exceeds 0.05 is a confusion the model makes in more than 5% of "
        "its images for that label, with 95% confidence over all 100 cells at once.",
        "",
        _table(
            confused[["condition", "attribute", "estimate", "low", "high", "low_simultaneous", "high_simultaneous"]]
        ),
        "",
        f"## Pixel map: E[{a}] - E[{b}] with simultaneous bands",
        "",
        f"{n_pixels} pixels; critical values: pointwise {pixel_counts['critical_values']['pointwise']:.3f}, "
        f"max-t {pixel_counts['critical_values']['max-t']:.3f}, Bonferroni {pixel_counts['critical_values']['bonferroni']:.3f}. "
        f"Pixels whose interval excludes 0: pointwise {pixel_counts['pointwise_excludes_0']}, max-t "
        f"{pixel_counts['max_t_excludes_0']}, Bonferroni {pixel_counts['bonferroni_excludes_0']}; Holm rejects "
        f"{pixel_counts['holm_rejects']}. Figure: `pixel_bands{suffix}.png`.",
        "",
        "## The 25 differences with the smallest Holm p-values",
        "",
        _table(r.differences.sort_values(["p_holm", "p_value"]).head(25)),
        "",
        f"Full tables: `audit{suffix}.json`. Figure: `audit{suffix}.png`.",
    ]
    (out / f"audit{suffix}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:14]))
    return summary


def terrain(cache: Path, budget: int, pilot: int, *, root: Path, seed: int = SEED, suffix: str = "") -> dict:
    from uqdiff.models.terrain import TerrainGenerator

    out = root / "terrain"
    out.mkdir(parents=True, exist_ok=True)
    levels = (1, 34, 67, 100)
    models = {d: TerrainGenerator(d) for d in levels}
    slope = MaxSlope()
    t0 = time.perf_counter()
    pilot_gens = {str(d): Cached(m, cache / f"terrain_pilot_{d}.npz") for d, m in models.items()}
    pr = paired_estimate(pilot_gens, slope, budget=pilot, design="mc", seed=[seed, 1])
    threshold = float(f"{np.mean([r.estimate for r in pr.arms['max_slope'].values()]):.3g}")
    gens = {f"difficulty {d}": Cached(m, cache / f"terrain_{d}.npz") for d, m in models.items()}
    steep = lambda x: slope(x) > threshold
    steep.__name__ = f"max_slope>{threshold}"
    r = audit(gens, steep, budget=budget, design="antithetic", trend=[0, 1, 2, 3], seed=seed)
    mean_slope = paired_estimate(
        gens, slope, budget=budget, design="antithetic", seed=seed, contrasts={"trend": [-1.5, -0.5, 0.5, 1.5]}
    )
    wall = time.perf_counter() - t0
    for g in [*pilot_gens.values(), *gens.values()]:
        g.save()
    calls = sum(g.model_calls for g in [*pilot_gens.values(), *gens.values()])
    model_seconds = sum(g.seconds for g in [*pilot_gens.values(), *gens.values()])
    fig = r.plot(
        title=f"Terrain consistency model: P(max slope > {threshold}) by difficulty, "
        f"{budget} common antithetic noises per level"
    )
    fig.savefig(out / f"audit{suffix}.png", dpi=130)
    tr = r.trend.iloc[0]
    summary = {
        "levels": list(levels),
        "threshold": threshold,
        "pilot_noises_per_level": pilot,
        "pilot_mean_max_slope": {k: float(v.estimate) for k, v in pr.arms["max_slope"].items()},
        "budget_noises_per_level": budget,
        "model_calls_total": r.generator_calls + pr.generator_calls,
        "model_calls_this_run": calls,
        "model_seconds_this_run": model_seconds,
        "analysis_wall_seconds": wall,
        "design": r.design,
        "seed": seed,
        "efficiency_differences": efficiency_summary(r.differences),
        "efficiency_proportions": efficiency_summary(r.proportions),
        "trend_per_level": {
            k: float(tr[k])
            for k in ("estimate", "low", "high", "p_value", "implied_efficiency", "implied_crn_efficiency")
        },
        "holm_rejections": int(r.differences.reject.sum()),
    }
    slope_frame = mean_slope.to_frame()
    (out / f"audit{suffix}.json").write_text(
        json.dumps(
            {"summary": summary, "audit": r.to_dict(), "mean_max_slope": slope_frame.to_dict(orient="records")},
            indent=1,
            default=float,
        )
    )
    lines = [
        f"# Terrain bias audit: P(max slope > {threshold}) across difficulty levels",
        "",
        f"Script: `benchmarks/audit_examples.py terrain`. Difficulty levels {list(levels)}; threshold {threshold} "
        f"(units of the [0,1]-scaled height per pixel) = mean max slope over the levels in a separate MC pilot of {pilot} noises per "
        f"level (seed [{seed}, 1]). Audit: common noise across levels and antithetic pairs, {budget} noises per level "
        f"({r.generator_calls} model calls; {calls} model calls and {model_seconds:.0f} s of model time in the run that "
        f"filled the cache). Seed {seed}.",
        "",
        "## Efficiency of common noise + antithetic pairs against independent MC (same total budget)",
        "",
        f"- pairwise differences: {fmt_eff(summary['efficiency_differences'])}",
        f"- per-level proportions (antithetic alone): {fmt_eff(summary['efficiency_proportions'])}",
        f"- trend: efficiency {tr.implied_efficiency:.3g}, against independent antithetic runs {tr.implied_crn_efficiency:.3g}",
        "",
        "## Does it rise with difficulty?",
        "",
        f"Least-squares slope of the proportion per level step (levels scored 0..3): {tr.estimate:.4f}, "
        f"95% CI [{tr.low:.4f}, {tr.high:.4f}], p = {tr.p_value:.3g}.",
        "",
        r.to_markdown(),
        "",
        "## Mean max slope per level (continuous statistic, same noise)",
        "",
        _table(
            slope_frame[
                ["kind", "name", "estimate", "low", "high", "implied_efficiency", "implied_crn_efficiency", "p_value"]
            ]
        ),
        "",
        f"Figure: `audit{suffix}.png`; full tables: `audit{suffix}.json`.",
    ]
    (out / f"audit{suffix}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:18]))
    return summary


def _table(frame) -> str:
    from uqdiff.estimators.results import markdown_table

    return markdown_table(frame)


def main(argv: list[str] | None = None) -> dict[str, dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", choices=["fashion", "terrain"], help="one model (default: both)")
    parser.add_argument(
        "--budget", type=int, default=None, help="noises per condition (fashion 160, terrain 128; --quick 8)"
    )
    parser.add_argument(
        "--pilot", type=int, default=None, help="terrain pilot noises per level (default 16, --quick 4)"
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="model outputs by noise (default /tmp/uqdiff-audit-cache; --quick: none)",
    )
    add_common_arguments(parser, "audit", seed=SEED)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads or 2)
    sizes = QUICK if args.quick else {"fashion": 160, "terrain": 128, "pilot": 16, "steps": STEPS}
    common = {"root": args.out, "seed": args.seed, "suffix": "_quick" if args.quick else ""}
    summaries = {}
    with tempfile.TemporaryDirectory() as scratch:
        cache = args.cache or (Path(scratch) if args.quick else Path("/tmp/uqdiff-audit-cache"))
        if args.model in (None, "fashion"):
            summaries["fashion"] = fashion(cache, args.budget or sizes["fashion"], steps=sizes["steps"], **common)
        if args.model in (None, "terrain"):
            summaries["terrain"] = terrain(
                cache, args.budget or sizes["terrain"], args.pilot or sizes["pilot"], **common
            )
    return summaries


if __name__ == "__main__":
    main()
