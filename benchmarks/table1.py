"""Table-1 style benchmark: pixel correlations of PN pairs (G(z), G(-z)) vs RR pairs (two independent noises).

Standard and centralized Pearson correlations (paper 001, section 3.1), mean
(SD) over pairs, for the terrain consistency model and the unconditional
Fashion-MNIST DDPM (50 DDIM steps), beside the paper's rows for unconditional
diffusion and consistency models. The paper uses 1600 pairs of each kind.

    python benchmarks/table1.py                                  # 1600 pairs per model (~20 min on 2 CPU cores)
    python benchmarks/table1.py --pairs terrain=100,fashion=100
    python benchmarks/table1.py --quick
"""

from __future__ import annotations

import argparse
import math
import time

import _common  # noqa: F401  (first: puts this checkout's uqdiff on the path)
import numpy as np
import pandas as pd
import torch
from _common import MODELS, add_common_arguments, device_name, load_model, write_results
from scipy import stats

from uqdiff import IID, Antithetic
from uqdiff.designs.seeds import substream
from uqdiff.estimators.results import markdown_table
from uqdiff.statistics import pn_rr_correlations

#: Paper 001, table 1: mean (SD) of PN std, RR std, PN centralized, RR centralized.
PAPER = {
    "unconditional DDIM, LSUN-Church": ("-0.62 (0.11)", "0.08 (0.17)", "-0.77 (0.07)", "0.00 (0.17)"),
    "unconditional DDIM, CelebA-HQ": ("-0.34 (0.19)", "0.25 (0.20)", "-0.78 (0.06)", "-0.01 (0.20)"),
    "unconditional DDIM, CIFAR-10": ("-0.76 (0.13)", "0.05 (0.24)", "-0.86 (0.07)", "0.00 (0.23)"),
    "consistency model, LSUN-Cat": ("-0.88 (0.06)", "0.02 (0.14)", "-0.91 (0.05)", "0.01 (0.14)"),
    "consistency model, LSUN-Bedroom": ("-0.78 (0.07)", "0.03 (0.15)", "-0.84 (0.06)", "0.00 (0.15)"),
    "consistency model, ImageNet-64": ("-0.71 (0.14)", "0.02 (0.19)", "-0.75 (0.12)", "0.01 (0.19)"),
}
COLUMNS = ("PN standard", "RR standard", "PN centralized", "RR centralized")


def images(generator, noise: torch.Tensor, batch_size: int) -> np.ndarray:
    """G applied to a (N, *noise_shape) noise batch, ``batch_size`` at a time."""
    parts = [generator(noise[lo : lo + batch_size]) for lo in range(0, len(noise), batch_size)]
    return torch.cat([torch.as_tensor(p).cpu() for p in parts]).double().numpy()


def correlations(generator, pairs: int, *, seed: int, batch_size: int):
    """PN pairs from the antithetic design, RR pairs from iid noise; independent streams of ``seed``."""
    shape = generator.noise_shape
    dim = math.prod(shape)
    pn = Antithetic().groups(np.arange(pairs), dim, seed=substream(seed, 1)).reshape(2 * pairs, *shape)
    rr = IID().groups(np.arange(2 * pairs), dim, seed=substream(seed, 2)).reshape(2 * pairs, *shape)
    x, y = images(generator, pn, batch_size), images(generator, rr, batch_size)
    return pn_rr_correlations(x[0::2], x[1::2], y[0::2], y[1::2])


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--pairs",
        default="terrain=1600,fashion=1600",
        help="pairs of each kind per model, e.g. terrain=100,fashion=100 (default 1600 each)",
    )
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps of the Fashion-MNIST DDPM (default 50)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    add_common_arguments(parser, "table1")
    args = parser.parse_args(argv)
    pairs = dict(item.split("=") for item in args.pairs.split(","))
    if args.quick:
        pairs, args.steps = {"fashion": "4"}, 2
    if unknown := set(pairs) - set(MODELS):
        parser.error(f"--pairs names unknown models {sorted(unknown)}; allowed: {', '.join(MODELS)}")
    if args.threads:
        torch.set_num_threads(args.threads)

    rows, raw, seconds = [], {}, {}
    for model, count in pairs.items():
        generator, description = load_model(model, steps=args.steps, device=args.device)
        start = time.perf_counter()
        result = correlations(generator, int(count), seed=args.seed, batch_size=args.batch_size)
        seconds[model] = time.perf_counter() - start
        summary = result.summary()
        p = stats.ttest_ind(result.pn_centralized, result.rr_centralized, equal_var=False).pvalue
        rows.append(
            {
                "model": f"ours: {description}",
                "pairs": int(count),
                **{c: str(v) for c, v in zip(COLUMNS, summary.values())},
                "PN vs RR centralized p": f"{p:.1e}",
            }
        )
        raw[model] = {
            "description": description,
            "pairs": int(count),
            "seconds": seconds[model],
            "summary": {k: v._asdict() for k, v in summary.items()},
            "p_value_centralized": p,
        }
        print(rows[-1], flush=True)
    rows += [
        {"model": f"paper: {name}", "pairs": 1600, **dict(zip(COLUMNS, values)), "PN vs RR centralized p": "< 1e-10"}
        for name, values in PAPER.items()
    ]
    frame = pd.DataFrame(rows)
    print(frame.to_string(index=False))

    write_results(
        args.out,
        "table1_quick" if args.quick else "table1",
        title="Table 1 (paper 001): pixel correlations of PN vs RR pairs",
        intro=[
            f"Mean (SD) over pairs of the Pearson correlation between the two flattened images of a pair; "
            f"centralized: after subtracting the mean image of that scheme's 2K images. Seed {args.seed}, "
            f"device {device_name(args.device)}; seconds per model: "
            + ", ".join(f"{m} {s:.0f}" for m, s in seconds.items())
            + ".",
            "p: Welch t-test of PN vs RR centralized correlations.",
        ],
        table=markdown_table(frame),
        data={
            "seed": args.seed,
            "steps": args.steps,
            "device": device_name(args.device),
            "models": raw,
            "paper": {k: dict(zip(COLUMNS, v)) for k, v in PAPER.items()},
        },
        notes=[
            "The terrain model is a one-step consistency model (compare with the paper's consistency rows); "
            "the Fashion-MNIST DDPM is an unconditional-mode DDIM sampler (compare with its unconditional rows)."
        ],
    )
    return frame


if __name__ == "__main__":
    main()
