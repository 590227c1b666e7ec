"""How far a chosen sample moves when its noise is blended with fresh noise (variance-preserving blend).

    python benchmarks/variations.py            # 3 anchors x 6 strengths x 64 variations, ~2 min on 2 cores
    python benchmarks/variations.py --quick    # seconds (smoke test)

For anchors z0 (seeded draws) of the Fashion-MNIST DDPM (unconditional, DDIM),
variations G(c z0 + sqrt(1 - c^2) w) with antithetic w, for c from 0.99 (close
to the anchor) to 0 (ordinary sampling). For each statistic S,
:func:`uqdiff.estimators.variations.estimate_variations` gives S(G(z0)), E[S] with its 95%
interval and the root mean squared deviation from S(G(z0)) with its interval:

* brightness (mean pixel in [0, 1]);
* SSIM to the anchor image (1 at the anchor);
* class change: 1 if the classifier's label differs from the anchor's, so
  E[S] is the probability that the variation changes the garment class.

Writes benchmarks/results/variations/variations.{md,json} and variations.png.
"""

from __future__ import annotations

import argparse

import _common
import pandas as pd
import torch

from uqdiff.designs import IID
from uqdiff.estimators.audit import proportion_interval
from uqdiff.estimators.results import markdown_table
from uqdiff.estimators.settings import RunSettings
from uqdiff.estimators.variations import estimate_variations
from uqdiff.models.classifier import load_fashion_classifier
from uqdiff.samplers import blend
from uqdiff.statistics import SSIM, Brightness

STRENGTHS = (0.99, 0.95, 0.9, 0.8, 0.6, 0.0)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--anchors", type=int, default=3, help="number of anchor noises (default 3)")
    parser.add_argument("--budget", type=int, default=64, help="variations per anchor and strength (default 64)")
    parser.add_argument("--steps", type=int, default=20, help="DDIM steps (default 20)")
    _common.add_common_arguments(parser, "variations")
    args = parser.parse_args(argv)
    if args.quick:
        args.anchors, args.budget, args.steps = 1, 4, 2
    if args.threads:
        torch.set_num_threads(args.threads)

    generator, model = _common.load_model("fashion", steps=args.steps)
    classifier = load_fashion_classifier()
    anchors = IID().groups(range(args.anchors), int(torch.Size(generator.noise_shape).numel()), seed=args.seed)
    anchors = anchors[:, 0].reshape(args.anchors, *generator.noise_shape)
    rows, examples = [], []
    for a, z0 in enumerate(anchors):
        with torch.no_grad():
            image = generator(z0.unsqueeze(0))
            label = int(classifier(image).argmax(dim=1))

        @torch.no_grad()
        def class_change(x: torch.Tensor, label: int = label) -> torch.Tensor:
            return (classifier(x).argmax(dim=1) != label).to(torch.float64)

        stats = {"brightness": Brightness(), "SSIM to anchor": SSIM(image[0]), "class change": class_change}
        for c in STRENGTHS:
            r = estimate_variations(
                generator,
                z0,
                stats,
                c=c,
                budget=args.budget,
                design="antithetic",
                seed=[args.seed, a],
                run=RunSettings(batch_size=64),
            )
            frame = r.to_frame()
            m = r["class change"].mean  # a proportion: Wilson on n_eff, not the t interval (uqdiff.estimators.audit)
            ci = proportion_interval(m.estimate, m.standard_error, n_noises=m.n_noises, df=m.df)
            frame.loc[frame["statistic"] == "class change", ["mean low", "mean high"]] = [ci.low, ci.high]
            frame.insert(0, "anchor", a)
            frame["anchor class"] = label
            rows.append(frame)
            print(
                f"anchor {a} c={c}: " + ", ".join(f"{n} {v.mean.estimate:.3f}" for n, v in r.summaries.items()),
                flush=True,
            )
        if a == 0:
            w = (
                IID()
                .groups(range(4), anchors[0].numel(), seed=[args.seed, 999])[:, 0]
                .reshape(4, *generator.noise_shape)
            )
            with torch.no_grad():
                examples = [image[0]] + [generator(blend(z0, w, c)) for c in STRENGTHS]
    frame = pd.concat(rows, ignore_index=True)
    table = markdown_table(frame.drop(columns=["anchor class"]).round(4))
    print(table)
    name = "variations_quick" if args.quick else "variations"
    _common.write_results(
        args.out,
        name,
        title="Variations around a chosen noise: how far statistics move, with intervals",
        intro=[
            f"Model: {model}. {args.anchors} anchors z0 (seed {args.seed}), {args.budget} antithetic "
            "variations c z0 + sqrt(1 - c^2) w per anchor and strength c; 95% t intervals. 'rms deviation' is "
            "sqrt(E[(S - S(G(z0)))^2]); for 'class change' E[S] is the probability that the classifier's label "
            "differs from the anchor's (anchor classes: "
            + ", ".join(map(str, frame.groupby("anchor")["anchor class"].first()))
            + ")."
        ],
        table=table,
        data={
            "rows": frame.to_dict("records"),
            "strengths": STRENGTHS,
            "budget": args.budget,
            "steps": args.steps,
            "seed": args.seed,
        },
    )
    plot(frame, examples, args.out / f"{name}.png")
    return frame


def plot(frame: pd.DataFrame, examples: list, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stats = list(frame["statistic"].unique())
    fig = plt.figure(figsize=(4.0 * len(stats), 7.8))
    grid = fig.add_gridspec(2, 1, height_ratios=[1.0, 1.1], hspace=0.4)
    top = grid[0].subgridspec(1, len(stats))
    for j, stat in enumerate(stats):
        ax = fig.add_subplot(top[0, j])
        for a, part in frame[frame["statistic"] == stat].groupby("anchor"):
            ax.errorbar(
                part["c"],
                part["mean"],
                yerr=[part["mean"] - part["mean low"], part["mean high"] - part["mean"]],
                marker="o",
                capsize=3,
                label=f"anchor {a}",
            )
            ax.axhline(part["value at z0"].iloc[0], color=ax.lines[-1].get_color(), lw=0.6, ls=":")
        ax.set_xlabel("blend strength c")
        ax.set_title(f"{stat}: E[S] and 95% interval")
        ax.invert_xaxis()
    fig.axes[0].legend(fontsize=8)
    bottom = grid[1].subgridspec(4, 1 + len(STRENGTHS), hspace=0.05, wspace=0.05)
    for i in range(4):
        for j, imgs in enumerate(examples):
            ax = fig.add_subplot(bottom[i, j])
            img = imgs if j == 0 else imgs[i]
            if j > 0 or i == 0:
                ax.imshow(img.reshape(img.shape[-2:]).numpy(), cmap="gray", vmin=-1, vmax=1)
            if i == 0:
                ax.set_title("anchor" if j == 0 else f"c={STRENGTHS[j - 1]}", fontsize=9)
            ax.axis("off")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
