"""Shared plumbing of the benchmark scripts: this checkout's uqdiff, the models, the machine, the results files.

Every script prints its table and writes ``<name>.md`` and ``<name>.json``
under ``benchmarks/results/<script>/`` with the exact command, seed, device
and wall time, so each figure can be rerun.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmark this checkout's uqdiff, not an installed copy
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
MODELS = ("terrain", "fashion")


def add_common_arguments(parser, script: str, *, seed: int = 0, out: Path | None = None) -> None:
    """--seed, --threads, --out and --quick, the same in every script; --out defaults to ``out`` or results/script."""
    out = RESULTS / script if out is None else out
    parser.add_argument("--seed", type=int, default=seed, help=f"root seed (default {seed})")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument(
        "--out", type=Path, default=out, help=f"output folder (default {out.relative_to(ROOT).as_posix()})"
    )
    parser.add_argument("--quick", action="store_true", help="a tiny run that finishes in seconds (smoke test)")


def coverage_arguments(argv, doc: str, *, quick_reps: int, extra=None):
    """The coverage scripts' arguments: --reps and the common ones; --quick cuts the repetitions."""
    import argparse

    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=1000, help="repetitions per cell (default 1000)")
    if extra is not None:
        extra(parser)
    add_common_arguments(parser, "coverage")
    args = parser.parse_args(argv)
    if args.quick:
        args.reps = quick_reps
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def block_moments(generator, statistic, design, *, reps: int, budget: int, seed) -> dict[str, Any]:
    """``reps`` independent runs of ``budget`` noises as blocks of one long run's group means.

    Groups are iid, so consecutive blocks are independent runs; returns the blocks (reps, groups),
    their means and central sums m2, m3, m4, vectorized over the runs.
    """
    from uqdiff.estimators import RunSettings, group_means

    _, means = group_means(
        generator,
        statistic,
        budget=reps * budget,
        design=design,
        seed=seed,
        run=RunSettings(batch_size=4096, dtype=torch.float64),
    )
    groups = budget // design.group_size
    blocks = means.reshape(reps, groups)
    mean = blocks.mean(axis=1)
    dev = blocks - mean[:, None]
    return {
        "groups": groups,
        "blocks": blocks,
        "mean": mean,
        "m2": (dev**2).sum(axis=1),
        "m3": (dev**3).sum(axis=1),
        "m4": (dev**4).sum(axis=1),
    }


def load_model(model: str, *, steps: int = 50, difficulty: int = 50, device: str = "cpu"):
    """(generator, description) for the terrain consistency model or the unconditional Fashion-MNIST DDPM."""
    if model == "terrain":
        from uqdiff.models.terrain import TerrainGenerator

        return TerrainGenerator(
            difficulty, device=device
        ), f"terrain consistency model, difficulty {difficulty}, 1x128x128"
    if model == "fashion":
        from uqdiff.models.fashion import FashionMNISTGenerator

        generator = FashionMNISTGenerator(None, num_inference_steps=steps, device=device)
        return generator, f"Fashion-MNIST DDPM, unconditional, DDIM eta=0, {steps} steps, 1x28x28"
    raise ValueError(f"model must be one of {MODELS}, got {model!r}")


def beyond_paper_statistics() -> dict:
    """The five statistics of the beyond-the-paper benchmarks: table 2's three, the image's std and the mean slope."""
    from uqdiff.statistics import Contrast, MeanSlope, PixelMean, PixelStd, VerticalCentroid

    return {
        "mean": PixelMean(scale=255),
        "std": PixelStd(scale=255),
        "slope": MeanSlope(),
        "contrast": Contrast(),
        "centroid": VerticalCentroid(),
    }


def f_interval(ratio, df_numerator: int, df_denominator: int, level: float = 0.95):
    """The F interval (low, high) of a ratio of two independent variance estimates on these degrees of freedom.

    ``ratio`` estimates var_a / var_b with var_a on ``df_numerator`` df and var_b on ``df_denominator``:
    an efficiency sigma^2 / variance of the estimate, or a factor between two estimators' efficiencies.
    """
    from scipy import stats

    tail = (1 - level) / 2
    return ratio / stats.f.ppf(1 - tail, df_numerator, df_denominator), ratio / stats.f.ppf(
        tail, df_numerator, df_denominator
    )


def device_name(device: str | torch.device = "cpu") -> str:
    """A readable name of where the model ran: the GPU's name, else the CPU and torch's thread count."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


def machine_info(**extra: Any) -> dict[str, Any]:
    """Platform and library versions, plus anything the script adds."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "numpy": np.__version__,
        **extra,
    }


def command_line() -> str:
    """The command that produced this run, relative to the repository root."""
    script = Path(sys.argv[0]).resolve()
    try:
        script = script.relative_to(ROOT)
    except ValueError:
        pass
    return shlex.join(["python", str(script), *sys.argv[1:]])


def write_results(
    out: Path, name: str, *, title: str, intro: list[str], table: str, data: dict[str, Any], notes: list[str] = ()
) -> None:
    """Write ``out/name.md`` (title, run facts, table, notes) and ``out/name.json`` (the same facts and data)."""
    facts = {
        "command": command_line(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
    }
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# {title}", "", *intro, "", f"Command: `{facts['command']}` ({facts['date']}).", "", table, ""]
    if notes:
        lines += ["Notes:", "", *[f"- {n}" for n in notes], ""]
    lines += ["Machine: " + ", ".join(f"{k} {v}" for k, v in facts["machine"].items()), ""]
    (out / f"{name}.md").write_text("\n".join(lines))
    (out / f"{name}.json").write_text(
        json.dumps({**facts, **data, "notes": list(notes)}, indent=2, default=_plain) + "\n"
    )
    print(f"\nwrote {out / name}.md and .json")


def _plain(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
