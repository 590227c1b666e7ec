"""Throughput of estimate() on Ray: 2 workers against 1, on a CPU-bound generator, side by side.

The generator is a fixed random 8-layer tanh MLP in torch (one thread per
worker), standing in for a model whose cost is all compute. Ray is started
once with 2 CPUs and warmed up (worker processes started) before timing;
each configuration is timed ``--repeats`` times, alternating, and the best
time is kept. Every run must give the same result, bit for bit, as the
in-process run (checked). Reported: model evaluations per second and the
ratio t(1 worker) / t(2 workers).

    flock /tmp/uqdiff-cpu.lock python benchmarks/ray_throughput.py
    python benchmarks/ray_throughput.py --budget 2000 --repeats 1 --out /tmp/ray_bench
    python benchmarks/ray_throughput.py --quick      # width-64 MLP, 1024 evaluations, 1 repeat: ray_throughput_quick
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import time

import _common  # noqa: F401  (first: puts this checkout's uqdiff on the path)
import torch
from _common import add_common_arguments

from uqdiff import estimate
from uqdiff.estimators.distributed import RayExecutor
from uqdiff.estimators.settings import RunSettings

#: --quick: a narrow MLP and a small budget, so the run is mostly Ray's start-up (a smoke test, not a timing).
QUICK = {"budget": 1024, "repeats": 1, "width": 64}


class MLPGenerator:
    """A CPU-bound stand-in for a diffusion model: noise (64,) -> 8 tanh layers of width 768 -> image (64,)."""

    noise_shape = (64,)

    def __init__(self, width: int = 768, layers: int = 8, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        sizes = [64] + [width] * layers + [64]
        self.weights = [torch.randn(a, b, generator=g, dtype=torch.float64) / a**0.5 for a, b in zip(sizes, sizes[1:])]

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        torch.set_num_threads(1)
        x = z.to(torch.float64)
        for w in self.weights:
            x = torch.tanh(x @ w)
        return x


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=int, default=40_000, help="model evaluations per run (default 40000)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per configuration (default 2)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--width", type=int, default=768, help="width of the MLP's hidden layers (default 768)")
    add_common_arguments(parser, "ray_throughput", seed=1)  # seed 1: the committed results
    args = parser.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    import ray

    torch.set_num_threads(1)  # one thread per worker, whatever --threads says
    gen = MLPGenerator(width=args.width)
    stats = {"mean": lambda x: x.mean(dim=1), "energy": lambda x: (x**2).mean(dim=1)}
    kw = dict(
        budget=args.budget,
        design="antithetic",
        seed=args.seed,
        run=RunSettings(batch_size=args.batch_size, dtype=torch.float64),
    )

    load_before = os.getloadavg()
    t0 = time.perf_counter()
    reference = estimate(gen, stats, **kw)
    t_in_process = time.perf_counter() - t0

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    executors = {1: RayExecutor(1), 2: RayExecutor(2)}
    for ex in executors.values():  # start and warm the worker processes
        estimate(gen, stats, **{**kw, "budget": 256, "run": kw["run"].replace(executor=ex)})
    times: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(args.repeats):
        for workers, ex in executors.items():
            t0 = time.perf_counter()
            got = estimate(gen, stats, **{**kw, "run": kw["run"].replace(executor=ex)})
            times[workers].append(time.perf_counter() - t0)
            if got.to_json() != reference.to_json():
                raise AssertionError(f"{workers} worker(s) differ from the in-process result")
    ray.shutdown()

    best = {w: min(t) for w, t in times.items()}
    result = {
        "benchmark": "ray_throughput",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "ray": ray.__version__,
        },
        "setup": {
            "generator": f"8-layer tanh MLP, width {args.width}, float64, 1 torch thread per worker",
            "quick": args.quick,
            "seed": args.seed,
            "budget": args.budget,
            "design": "antithetic",
            "batch_size": args.batch_size,
            "repeats": args.repeats,
            "shards": "about 4 per worker (RayExecutor default)",
        },
        "seconds": {"in_process": t_in_process, "ray_1_worker": times[1], "ray_2_workers": times[2]},
        "evaluations_per_second": {
            "in_process": args.budget / t_in_process,
            "ray_1_worker": args.budget / best[1],
            "ray_2_workers": args.budget / best[2],
        },
        "speedup_2_vs_1_workers": best[1] / best[2],
        "bit_identical_to_in_process": True,
        # other processes on the 2 cores lower the 2-worker gain: the 1-minute load average (before, after)
        "load_average_1min": [load_before[0], os.getloadavg()[0]],
    }
    name = "ray_throughput_quick" if args.quick else "ray_throughput"
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    eps = result["evaluations_per_second"]
    table = "\n".join(
        [
            "| run | evaluations / s |",
            "|---|---|",
            f"| in-process | {eps['in_process']:.0f} |",
            f"| Ray, 1 worker | {eps['ray_1_worker']:.0f} |",
            f"| Ray, 2 workers | {eps['ray_2_workers']:.0f} |",
            "",
            f"Speedup of 2 workers over 1: **{result['speedup_2_vs_1_workers']:.2f}x** "
            f"({args.budget} evaluations, best of {args.repeats}; all runs bit-identical to the in-process result; "
            f"1-minute load average {result['load_average_1min'][0]:.2f} before, {result['load_average_1min'][1]:.2f} after).",
        ]
    )
    (out / f"{name}.md").write_text(table + "\n")
    print(table)
    return result


if __name__ == "__main__":
    main()
