"""Overhead of uqdiff: wall time against a bare loop, and peak memory of a pixel-map estimate against its budget.

Time: :func:`uqdiff.estimate` against a bare loop over the same generator
(the Fashion-MNIST DDPM), the same noise (drawn from the same design, seed and
groups), the same batch size and the same statistic, which only averages the
values. Repetitions alternate which runs first; the ratio is uqdiff / bare.

Memory: a ``PixelMap`` estimate (3x32x32 maps) on an exact Gaussian DDIM,
each budget in a fresh subprocess; peak resident memory (Linux VmHWM, reset
just before the estimate) of the whole process and above its resident memory
before estimating.

    python benchmarks/overhead.py                    # 10 DDIM steps, budget 256, 3 repetitions; 2 000 vs 20 000
    python benchmarks/overhead.py --quick
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import _common  # noqa: F401  (first: puts this checkout's uqdiff on the path)
import numpy as np
import pandas as pd
import torch
from _common import add_common_arguments, device_name, load_model, write_results

from uqdiff import estimate, get_design
from uqdiff.estimators.results import markdown_table
from uqdiff.estimators.settings import RunSettings
from uqdiff.samplers import GaussianDDIM
from uqdiff.statistics import PixelMap, PixelMean


def bare_loop(generator, statistic, design, *, budget: int, batch_size: int, seed) -> float:
    """The same noise, model calls and statistic as ``estimate``, with nothing but a mean at the end."""
    k = design.group_size
    shape = generator.noise_shape
    per_call = max(1, batch_size // k)
    values = []
    for start in range(0, budget // k, per_call):
        noise = design.groups(np.arange(start, min(start + per_call, budget // k)), math.prod(shape), seed=seed)
        noise = noise.reshape(-1, *shape)
        for lo in range(0, len(noise), batch_size):
            values.append(statistic(generator(noise[lo : lo + batch_size])))
    return float(torch.cat(values).double().mean())


def time_ratio(generator, *, design: str, budget: int, batch_size: int, reps: int, seed: int) -> dict:
    """Interleaved timings of estimate and the bare loop; their estimates must agree."""
    design = get_design(design)
    statistic = PixelMean(scale=255)
    runs = {
        "uqdiff": lambda: (
            estimate(
                generator, statistic, budget=budget, design=design, seed=seed, run=RunSettings(batch_size=batch_size)
            )["mean"].estimate
        ),
        "bare": lambda: bare_loop(generator, statistic, design, budget=budget, batch_size=batch_size, seed=seed),
    }
    seconds = {name: [] for name in runs}
    values = {}
    for rep in range(reps):
        for name in ("uqdiff", "bare") if rep % 2 else ("bare", "uqdiff"):
            start = time.perf_counter()
            values[name] = runs[name]()
            seconds[name].append(time.perf_counter() - start)
    ratios = np.array(seconds["uqdiff"]) / np.array(seconds["bare"])
    return {
        "design": design.name,
        "seconds": seconds,
        "ratios": ratios.tolist(),
        "median ratio": float(np.median(ratios)),
        "total ratio": sum(seconds["uqdiff"]) / sum(seconds["bare"]),
        "estimates": values,
        "same estimate": bool(np.isclose(values["uqdiff"], values["bare"], rtol=1e-9)),
    }


def memory_child(budget: int, seed: int) -> None:
    """Run one PixelMap estimate and print peak RSS (MiB) before and after as JSON; used in a subprocess."""
    torch.set_num_threads(1)  # a cheap elementwise model: one thread, no contention with the parent
    generator = GaussianDDIM(np.zeros((3, 32, 32)), std=0.5, num_steps=2)
    Path("/proc/self/clear_refs").write_text("5")  # Linux: reset the peak (VmHWM) to the current RSS
    before = _status_mib("VmRSS")
    start = time.perf_counter()
    estimate(generator, PixelMap(value_range=(-1, 1)), budget=budget, seed=seed, run=RunSettings(batch_size=64))
    seconds = time.perf_counter() - start
    print(json.dumps({"budget": budget, "before_mib": before, "peak_mib": _status_mib("VmHWM"), "seconds": seconds}))


def _status_mib(field: str) -> float:
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field + ":"))
    return int(line.split()[1]) / 1024


def peak_memory(budget: int, seed: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", str(budget), "--seed", str(seed)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10, help="DDIM steps of the Fashion-MNIST DDPM (default 10)")
    parser.add_argument("--budget", type=int, default=256, help="model evaluations per timed run (default 256)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--designs", default="mc,antithetic", help="designs to time (default mc,antithetic)")
    parser.add_argument("--reps", type=int, default=3, help="timed repetitions of each (default 3)")
    parser.add_argument("--memory-budgets", default="2000,20000", help="PixelMap budgets (default 2000,20000)")
    parser.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    add_common_arguments(parser, "overhead")
    args = parser.parse_args(argv)
    if args.memory_child is not None:
        return memory_child(args.memory_child, args.seed)
    if args.quick:
        args.steps, args.budget, args.reps, args.memory_budgets = 2, 64, 2, "200,2000"
    if args.threads:
        torch.set_num_threads(args.threads)

    generator, description = load_model("fashion", steps=args.steps)
    timing = [
        time_ratio(generator, design=d, budget=args.budget, batch_size=args.batch_size, reps=args.reps, seed=args.seed)
        for d in args.designs.split(",")
    ]
    memory = [peak_memory(int(b), args.seed) for b in args.memory_budgets.split(",")]
    rows = [
        {
            "measure": f"wall time uqdiff / bare loop, {t['design']} (median of {args.reps})",
            "value": t["median ratio"],
            "detail": f"total ratio {t['total ratio']:.4f}; bare "
            f"{np.median(t['seconds']['bare']):.2f} s; same estimate: {t['same estimate']}",
        }
        for t in timing
    ]
    small, large = memory[0], memory[-1]
    rows += [
        {
            "measure": f"peak RSS, {large['budget']} / {small['budget']} samples",
            "value": large["peak_mib"] / small["peak_mib"],
            "detail": f"{small['peak_mib']:.0f} MiB vs {large['peak_mib']:.0f} MiB",
        },
        {
            "measure": f"peak RSS above pre-estimate, {large['budget']} / {small['budget']} samples",
            "value": (large["peak_mib"] - large["before_mib"]) / (small["peak_mib"] - small["before_mib"]),
            "detail": f"{small['peak_mib'] - small['before_mib']:.0f} MiB vs {large['peak_mib'] - large['before_mib']:.0f} MiB",
        },
    ]
    frame = pd.DataFrame(rows)
    print(frame.to_string(index=False))

    write_results(
        args.out,
        "overhead_quick" if args.quick else "overhead",
        title="Overhead of uqdiff against a bare loop",
        intro=[
            f"Timing: {description}, budget {args.budget}, batch size {args.batch_size}, {args.reps} interleaved "
            f"repetitions, seed {args.seed}, device {device_name()}. Targets: time ratio within 1.05; "
            "peak memory ratio within 1.2.",
            "Memory: PixelMap (3x32x32) estimate of an exact Gaussian DDIM (2 steps), batch size 64, each budget "
            "in a fresh process; peak RSS (VmHWM, reset before the estimate) of the whole process, and above the RSS before the estimate.",
        ],
        table=markdown_table(frame),
        data={
            "timing": timing,
            "memory": memory,
            "steps": args.steps,
            "budget": args.budget,
            "batch_size": args.batch_size,
            "seed": args.seed,
            "device": device_name(),
        },
    )
    return frame


if __name__ == "__main__":
    main()
