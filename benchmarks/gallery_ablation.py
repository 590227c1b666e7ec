"""Gallery diversity against gallery size K and correlation c (coupling paper, tables 5 and 6), and prop. 3.2.

    python benchmarks/gallery_ablation.py                 # 180 galleries per design, ~10 min on 2 cores
    python benchmarks/gallery_ablation.py --quick         # seconds (smoke test)

On the Fashion-MNIST DDPM (unconditional, deterministic DDIM) every design
gets the same number of galleries, each on its own stream, and every gallery
statistic is estimated with a 95% t interval over the iid gallery values:

* table 5: iid galleries (``Equicorrelated(K, 0)``) against the repulsive
  coupling (``KAntithetic(K)``, correlation -1/(K-1)) for K = 2, 3, 4, 5;
* table 6: ``Equicorrelated(3, c)`` for c = 0, -0.125, -0.25, -0.375, -0.5
  (c = -0.5 is the repulsive coupling; its run is shared with table 5);
* proposition 3.2: gallery means of single-image statistics (brightness,
  contrast, the classifier's confidence) are the same under every design; the
  Welch difference from iid at the same K should contain 0 about 95% of the time.

Diversity: pairwise L2 and SSIM on pixels, MSS and Vendi on the 288 penultimate
features of the project's Fashion-MNIST classifier (the paper uses SSCD
features of natural images; this is the nearest learned feature map we have).
Writes benchmarks/results/gallery/ablation.{md,json} and ablation.png.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import _common
import numpy as np
import pandas as pd
import torch
from scipy import stats as sps

from uqdiff.designs import Equicorrelated, KAntithetic, NoiseDesign
from uqdiff.estimators.estimate import design_seed
from uqdiff.estimators.gallery import GalleryDifference, estimate_gallery
from uqdiff.estimators.results import markdown_table
from uqdiff.estimators.settings import RunSettings
from uqdiff.models.classifier import load_fashion_classifier
from uqdiff.statistics import (
    Brightness,
    Contrast,
    GalleryMean,
    MeanPairwiseCosine,
    MeanPairwiseL2,
    MeanPairwiseSSIM,
    Vendi,
)

GALLERY_SIZES = (2, 3, 4, 5)
CORRELATIONS = (0.0, -0.125, -0.25, -0.375, -0.5)
DIVERSITY = ("L2", "SSIM", "MSS", "Vendi")
SINGLE = ("brightness", "contrast", "confidence")
HIGHER_IS_MORE_DIVERSE = {"L2": True, "SSIM": False, "MSS": False, "Vendi": True}
#: SD1.5 over COCO prompts (tables 5 and 6 of the coupling paper): L2, MSS, Vendi.
PAPER_TABLE5 = {
    (2, "iid"): (0.1276, 0.1550, 1.9679),
    (2, "repulsive"): (0.1911, 0.1414, 1.9721),
    (3, "iid"): (0.1267, 0.1504, 2.9136),
    (3, "repulsive"): (0.1567, 0.1370, 2.9255),
    (4, "iid"): (0.1260, 0.1502, 3.8372),
    (4, "repulsive"): (0.1458, 0.1426, 3.8519),
    (5, "iid"): (0.1257, 0.1497, 4.7419),
    (5, "repulsive"): (0.1421, 0.1439, 4.7592),
}
PAPER_TABLE6 = {
    0.0: (0.1283, 0.1542, 2.9066),
    -0.125: (0.1353, 0.1429, 2.9176),
    -0.25: (0.1428, 0.1447, 2.9204),
    -0.375: (0.1497, 0.1332, 2.9300),
    -0.5: (0.1574, 0.1346, 2.9281),
}


def gallery_statistics() -> dict:
    classifier = load_fashion_classifier()

    @torch.no_grad()
    def features(x: torch.Tensor) -> torch.Tensor:
        return classifier.features(x)

    @torch.no_grad()
    def confidence(x: torch.Tensor) -> torch.Tensor:
        return classifier.predict_proba(x).max(dim=1).values

    return {
        "L2": MeanPairwiseL2(),
        "SSIM": MeanPairwiseSSIM(),
        "MSS": MeanPairwiseCosine(features=features),
        "Vendi": Vendi(features=features),
        "brightness": GalleryMean(Brightness()),
        "contrast": GalleryMean(Contrast()),
        "confidence": GalleryMean(confidence, name="confidence"),
    }


def design_for(k: int, c: float) -> NoiseDesign:
    """The repulsive end is KAntithetic (so tables 5 and 6 share its run); other c are Equicorrelated."""
    return KAntithetic(k) if np.isclose(c, -1.0 / (k - 1)) else Equicorrelated(k, c)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--galleries", type=int, default=180, help="galleries per design (default 180)")
    parser.add_argument("--steps", type=int, default=20, help="DDIM steps (default 20)")
    parser.add_argument(
        "--tables-from",
        type=Path,
        default=None,
        help="rebuild the tables and plot from a finished run's JSON instead of sampling",
    )
    _common.add_common_arguments(parser, "gallery")
    args = parser.parse_args(argv)
    if args.quick:
        args.galleries, args.steps = 4, 2
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.tables_from:  # rebuild the tables from a finished run's rows, without sampling
        saved = json.loads(args.tables_from.read_text())
        args.galleries, args.steps, args.seed = saved["galleries"], saved["steps"], saved["seed"]
        frame, seconds = pd.DataFrame(saved["rows"]), saved["seconds"]
        model = saved.get("model", f"Fashion-MNIST DDPM, unconditional, DDIM eta=0, {args.steps} steps, 1x28x28")
        sampled_by = saved.get("sampled_by", f"`{saved['command']}` ({saved['date']})")
    else:
        frame, seconds, model = run(args)
        sampled_by = "the command below"
    table5, table6, prop32 = tables(frame)
    q = homogeneity(frame)
    print(table5, table6, prop32, q, sep="\n\n")

    single = frame[frame["statistic"].isin(SINGLE) & frame["p"].notna()]
    covered = int(((single["diff low"] <= 0) & (single["diff high"] >= 0)).sum())
    notes = [
        f"Prop. 3.2: {covered} of {len(single)} single-image differences from iid contain 0 "
        f"(smallest p = {single['p'].min():.3g}).",
        "Vendi and MSS use the classifier's 288 ReLU features, which are non-negative, so cosine similarities are "
        "positive and Vendi stays well below K, as with the paper's SSCD features.",
        "The single-image differences from iid at K = 3 share one baseline run, so they fail together when it is "
        "off; the homogeneity test (Cochran's Q over all designs) has no baseline.",
        "Design run times (s): " + ", ".join(f"{cell}: {t:.0f}" for cell, t in seconds.items()),
    ]
    out = args.out
    name = "ablation_quick" if args.quick else "ablation"
    _common.write_results(
        out,
        name,
        title="Gallery diversity vs gallery size and correlation (coupling paper tables 5, 6; prop. 3.2)",
        intro=[
            f"Model: {model}. {args.galleries} galleries per design, each design on its own stream from seed "
            f"{args.seed}; 95% t intervals over the iid gallery values; differences from the iid design of the "
            "same K are Welch t intervals with two-sided p-values. Paper: SD1.5 over COCO prompts (L2, MSS, Vendi).",
            "",
            f"Galleries sampled by {sampled_by}.",
        ],
        table="\n\n".join(
            [
                "## Table 5: gallery size",
                table5,
                "## Table 6: correlation at K = 3",
                table6,
                "## Proposition 3.2: single-image statistics (gallery means)",
                prop32,
                "## Proposition 3.2: one E[S] for all designs (Cochran's Q)",
                q,
            ]
        ),
        data={
            "model": model,
            "sampled_by": sampled_by,
            "galleries": args.galleries,
            "steps": args.steps,
            "seed": args.seed,
            "rows": frame.to_dict("records"),
            "seconds": seconds,
        },
        notes=notes,
    )
    plot(frame, out / f"{name}.png")
    return frame


def run(args) -> tuple[pd.DataFrame, dict[str, float], str]:
    """Every unique (K, c) design once, each on its own stream; one row per (design, statistic)."""
    generator, model = _common.load_model("fashion", steps=args.steps)
    stats = gallery_statistics()
    cells = [(k, 0.0) for k in GALLERY_SIZES] + [(k, -1.0 / (k - 1)) for k in GALLERY_SIZES]
    cells += [(3, c) for c in CORRELATIONS]
    runs, seconds = {}, {}
    for k, c in dict.fromkeys(cells):  # unique cells, in order
        design = design_for(k, c)
        start = time.perf_counter()
        runs[k, c] = estimate_gallery(
            generator,
            stats,
            design=design,
            budget=args.galleries * k,
            seed=design_seed(args.seed, design),
            run=RunSettings(batch_size=60),
        )
        seconds[f"K={k} c={c:g}"] = time.perf_counter() - start
        print(f"K={k} c={c:+.3f} {design.name}: {seconds[f'K={k} c={c:g}']:.0f} s", flush=True)
    rows = []
    for (k, c), result in runs.items():
        for stat in (*DIVERSITY, *SINGLE):
            r = result[stat]
            d = GalleryDifference.welch(r, runs[k, 0.0][stat]) if c != 0.0 else None
            rows.append(
                {
                    "K": k,
                    "c": c,
                    "design": result.design,
                    "statistic": stat,
                    "galleries": r.n_groups,
                    "estimate": r.estimate,
                    "low": r.low,
                    "high": r.high,
                    "diff vs iid": None if d is None else d.difference,
                    "diff low": None if d is None else d.confidence_interval.low,
                    "diff high": None if d is None else d.confidence_interval.high,
                    "p": None if d is None else d.p_value,
                }
            )
    return pd.DataFrame(rows), seconds, model


def homogeneity(frame: pd.DataFrame) -> str:
    """Cochran's Q per single-image statistic: do all designs (every K and c) share one E[S]?

    Prop. 3.2 says they do. Unlike the differences from iid, this uses no
    baseline run, so one unlucky baseline cannot fail several comparisons at once.
    """
    rows = []
    for stat in SINGLE:
        part = frame[frame["statistic"] == stat]
        se = (part["high"] - part["low"]) / (2 * sps.t.ppf(0.975, part["galleries"] - 1))
        w = 1.0 / se**2
        pooled = float((w * part["estimate"]).sum() / w.sum())
        q = float((w * (part["estimate"] - pooled) ** 2).sum())
        rows.append(
            {
                "statistic": stat,
                "designs": len(part),
                "pooled E[S]": round(pooled, 4),
                "largest |z|": round(float((abs(part["estimate"] - pooled) / se).max()), 2),
                "Q": round(q, 2),
                "df": len(part) - 1,
                "p": round(float(sps.chi2.sf(q, len(part) - 1)), 3),
            }
        )
    return markdown_table(pd.DataFrame(rows))


def _cell(frame: pd.DataFrame, k: int, c: float, stat: str) -> pd.Series:
    sel = frame[(frame["K"] == k) & np.isclose(frame["c"], c) & (frame["statistic"] == stat)]
    return sel.iloc[0]


def _interval(row: pd.Series) -> str:
    return f"{row['estimate']:.4f} [{row['low']:.4f}, {row['high']:.4f}]"


def _difference(row: pd.Series) -> str:
    if row["p"] is None or pd.isna(row["p"]):
        return ""
    return f"{row['diff vs iid']:+.4f} [{row['diff low']:+.4f}, {row['diff high']:+.4f}], p={row['p']:.2g}"


def tables(frame: pd.DataFrame) -> tuple[str, str, str]:
    t5, t6, t32 = [], [], []
    for k in GALLERY_SIZES:
        for label, c in (("iid", 0.0), ("repulsive", -1.0 / (k - 1))):
            row = {"K": k, "coupling": label}
            for stat in DIVERSITY:
                r = _cell(frame, k, c, stat)
                row[stat] = _interval(r)
                row[f"{stat} vs iid"] = _difference(r)
            row["paper L2 / MSS / Vendi"] = " / ".join(f"{v:.4f}" for v in PAPER_TABLE5[k, label])
            t5.append(row)
        l2 = [_cell(frame, k, c, "L2")["estimate"] for c in (0.0, -1.0 / (k - 1))]
        t5[-1]["coupling"] += f" (L2 +{100 * (l2[1] / l2[0] - 1):.1f}%)"
    for c in CORRELATIONS:
        row = {"c": c}
        for stat in DIVERSITY:
            r = _cell(frame, 3, c, stat)
            row[stat] = _interval(r)
            row[f"{stat} vs iid"] = _difference(r)
        row["paper L2 / MSS / Vendi"] = " / ".join(f"{v:.4f}" for v in PAPER_TABLE6[c])
        t6.append(row)
    for (k, c), part in frame[frame["statistic"].isin(SINGLE)].groupby(["K", "c"], sort=False):
        row = {"K": k, "c": c}
        for stat in SINGLE:
            r = part[part["statistic"] == stat].iloc[0]
            row[stat] = _interval(r)
            row[f"{stat} vs iid"] = _difference(r)
        t32.append(row)
    return tuple(markdown_table(pd.DataFrame(t)) for t in (t5, t6, t32))


def plot(frame: pd.DataFrame, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(DIVERSITY), figsize=(3.4 * len(DIVERSITY), 6.4))
    for j, stat in enumerate(DIVERSITY):
        ax = axes[0, j]
        for label, color, cs in (
            ("iid", "tab:gray", [0.0] * 4),
            ("repulsive", "tab:red", [-1 / (k - 1) for k in GALLERY_SIZES]),
        ):
            rows = [_cell(frame, k, c, stat) for k, c in zip(GALLERY_SIZES, cs)]
            est = np.array([r["estimate"] for r in rows])
            err = np.array([[e - r["low"], r["high"] - e] for r, e in zip(rows, est)]).T
            ax.errorbar(GALLERY_SIZES, est, yerr=err, marker="o", capsize=3, color=color, label=label)
        ax.set_xlabel("gallery size K")
        ax.set_title(f"{stat} ({'higher' if HIGHER_IS_MORE_DIVERSE[stat] else 'lower'} = more diverse)")
        ax.set_xticks(GALLERY_SIZES)
        ax = axes[1, j]
        rows = [_cell(frame, 3, c, stat) for c in CORRELATIONS]
        est = np.array([r["estimate"] for r in rows])
        err = np.array([[e - r["low"], r["high"] - e] for r, e in zip(rows, est)]).T
        ax.errorbar(CORRELATIONS, est, yerr=err, marker="o", capsize=3, color="tab:blue")
        ax.set_xlabel("correlation c (K = 3)")
        ax.invert_xaxis()
    axes[0, 0].legend()
    fig.suptitle("Gallery diversity with 95% intervals: Fashion-MNIST DDPM, DDIM")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
