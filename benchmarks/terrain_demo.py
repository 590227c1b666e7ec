"""The README demo on the pretrained terrain model, with its table written to benchmarks/results/terrain_demo/.

    python benchmarks/terrain_demo.py            # budget 256 per design, seed 0 (about 2 min on 2 CPU cores)
    python benchmarks/terrain_demo.py --quick    # budget 8, RQMC 2 x 4, K-antithetic k=4: comparison_quick

Runs ``python -m uqdiff.cli.demo --quiet`` and writes its comparison.{md,json}
(comparison_quick.{md,json} with --quick). Options other than the ones below go
to the demo (--budget, --difficulty, --rqmc-n, --k, --batch-size, --model; see
``python -m uqdiff.cli.demo --help``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import _common  # noqa: F401  (first: puts this checkout's uqdiff on the path)
import torch
from _common import add_common_arguments

from uqdiff.cli.demo import main as demo

#: --quick: 8 model calls per design (32 in all), still two groups per design for an interval.
QUICK = ["--budget", "8", "--rqmc-n", "4", "--k", "4", "--batch-size", "8"]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser, "terrain_demo")
    args, rest = parser.parse_known_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    name = "comparison_quick" if args.quick else "comparison"
    with tempfile.TemporaryDirectory() as tmp:  # the demo always writes comparison.*
        demo(["--quiet", "--seed", str(args.seed), "--out", tmp, *(QUICK if args.quick else []), *rest])
        args.out.mkdir(parents=True, exist_ok=True)
        for suffix in (".json", ".md"):
            shutil.copyfile(Path(tmp) / f"comparison{suffix}", args.out / f"{name}{suffix}")
    print(f"\nwrote {args.out / name}.md and .json")
    return json.loads((args.out / f"{name}.json").read_text())


if __name__ == "__main__":
    main()
