"""Cost of capture: wall time against a direct call, and peak memory against the number of steps.

Time: a DDPM sampling loop written the usual way (the project's Fashion-MNIST DDPM UNet,
diffusers' ``DDPMScheduler.step``, which draws each step's noise itself with ``randn_tensor``),
called directly (noise from torch's global generator) and through :class:`uqdiff.samplers.Captured`
(every draw from an MC design's counter-based stream), at batch 32, side by side in one process;
repetitions alternate which runs first. The ratio is captured / direct. The time spent making the
stream's slots (Philox + Box-Muller) is also measured inside the captured calls.

Memory: a stochastic pipeline (diffusers' ``DDPMPipeline`` on a small random-weight UNet, 3x32x32,
batch 32) through ``PipelineGenerator`` and ``uqdiff.estimate`` at 100 and at 1000 steps, each in a
fresh process; peak resident memory (Linux VmHWM, reset just before the estimate) of the whole
process and above the resident memory before it. For contrast, the fixed-noise path
(``DiffusersSampler``, whose noise tensor holds x_T and every step's noise) at the same settings.

    python benchmarks/capture_overhead.py            # 20 steps x 7 repetitions; memory at 100 and 1000 steps
    python benchmarks/capture_overhead.py --quick
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import _common  # noqa: F401  (first: puts this checkout's uqdiff on the path)
import numpy as np
import pandas as pd
import torch
from _common import add_common_arguments, device_name, write_results

from uqdiff.designs import IID
from uqdiff.estimators.results import markdown_table
from uqdiff.samplers import Captured

BATCH = 32


def ddpm_loop(unet, scheduler, label: int):
    """A DDPM sampler as one writes it against diffusers: the scheduler draws each step's noise."""

    @torch.no_grad()
    def sample(n: int) -> torch.Tensor:
        x = torch.randn(n, 1, 32, 32)
        labels = torch.full((n,), label, dtype=torch.long)
        for t in scheduler.timesteps:
            eps = unet(x, t, class_labels=labels).sample
            x = scheduler.step(eps, t, x).prev_sample
        return x

    return sample


def time_overhead(steps: int, reps: int, seed: int) -> tuple[pd.DataFrame, dict]:
    from uqdiff.models.fashion import NULL_CLASS, load_fashion_ddpm

    unet, scheduler = load_fashion_ddpm()
    unet.eval()
    scheduler.set_timesteps(steps)
    loop = ddpm_loop(unet, scheduler, NULL_CLASS)
    captured = Captured(loop)
    captured.trace()
    slot_seconds = []

    def direct(rep):
        torch.manual_seed(seed + rep)
        return loop(BATCH)

    def through_capture(rep):
        stream = IID().stream(np.arange(rep * BATCH, (rep + 1) * BATCH), seed=seed)
        inner = stream.slot

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            out = inner(*args, **kwargs)
            slot_seconds.append(time.perf_counter() - t0)
            return out

        stream.slot = timed
        return captured(stream)

    direct(0), through_capture(0)  # warm up both paths
    slot_seconds.clear()
    rows = []
    for rep in range(reps):
        order = [("direct", direct), ("captured", through_capture)]
        if rep % 2:
            order.reverse()
        times = {}
        for name, run in order:
            t0 = time.perf_counter()
            run(rep)
            times[name] = time.perf_counter() - t0
        rows.append({"repetition": rep, "first": order[0][0], **times, "ratio": times["captured"] / times["direct"]})
    frame = pd.DataFrame(rows)
    per_call_slots = sum(slot_seconds) / reps
    summary = {
        "steps": steps,
        "batch": BATCH,
        "repetitions": reps,
        "median_ratio": float(frame.ratio.median()),
        "mean_ratio": float(frame.ratio.mean()),
        "ratio_sd": float(frame.ratio.std(ddof=1)) if reps > 1 else float("nan"),
        "median_direct_s": float(frame.direct.median()),
        "median_captured_s": float(frame.captured.median()),
        "slot_seconds_per_call": per_call_slots,
        "slot_share_of_direct": per_call_slots / float(frame.direct.median()),
        "draws_per_call": len(captured.layout),
    }
    return frame, summary


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def memory_child(path: str, steps: int, seed: int) -> None:
    """One estimate in this process; prints its peak memory as JSON (run in a subprocess)."""
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    from uqdiff import estimate
    from uqdiff.samplers import DiffusersSampler, PipelineGenerator

    torch.manual_seed(seed)  # the random weights of the small model
    unet = UNet2DModel(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        norm_num_groups=8,
    ).eval()
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    if path == "captured":
        pipe = DDPMPipeline(unet=unet, scheduler=scheduler)
        pipe.set_progress_bar_config(disable=True)
        generator = PipelineGenerator(pipe, num_inference_steps=steps, output_type="pt")
    else:
        generator = DiffusersSampler(unet, scheduler, num_inference_steps=steps, device="cpu")
    before = _status_mib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # Linux: reset the peak (VmHWM) to the current RSS
    t0 = time.perf_counter()
    estimate(generator, lambda x: x.mean(dim=(1, 2, 3)), budget=BATCH, batch_size=BATCH, design="antithetic", seed=0)
    seconds = time.perf_counter() - t0
    print(
        json.dumps(
            {"path": path, "steps": steps, "before_mib": before, "peak_mib": _status_mib("VmHWM"), "seconds": seconds}
        )
    )


def peak_memory(path: str, steps: int, seed: int, threads: int | None) -> dict:
    args = [sys.executable, __file__, "--child", path, str(steps), "--seed", str(seed)]
    if threads:
        args += ["--threads", str(threads)]
    out = subprocess.run(args, capture_output=True, text=True, check=True)
    row = json.loads(out.stdout.strip().splitlines()[-1])
    row["above_before_mib"] = row["peak_mib"] - row["before_mib"]
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser, "capture_overhead")
    parser.add_argument("--steps", type=int, default=20, help="DDPM steps of the timed loop (default 20)")
    parser.add_argument("--reps", type=int, default=7, help="timed repetitions of each path (default 7)")
    parser.add_argument(
        "--memory-steps", type=int, nargs=2, default=(100, 1000), help="the two step counts compared (default 100 1000)"
    )
    parser.add_argument("--no-fixed", action="store_true", help="skip the fixed-noise contrast runs")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        memory_child(args.child[0], int(args.child[1]), args.seed)
        return None
    if args.quick:
        args.steps, args.reps, args.memory_steps, args.no_fixed = 2, 2, (5, 10), True

    frame, summary = time_overhead(args.steps, args.reps, args.seed)
    print(markdown_table(frame.round(4)))
    paths = ["captured"] + ([] if args.no_fixed else ["fixed"])
    mem = pd.DataFrame([peak_memory(p, s, args.seed, args.threads) for p in paths for s in args.memory_steps])
    print(markdown_table(mem.round(1)))
    lo, hi = args.memory_steps
    ratios = {}
    for p in paths:
        sub = mem[mem.path == p].set_index("steps")
        ratios[p] = {
            "peak_ratio": float(sub.peak_mib[hi] / sub.peak_mib[lo]),
            "above_before_ratio": float(sub.above_before_mib[hi] / sub.above_before_mib[lo]),
        }
    table = "\n".join(
        [
            f"Time, {summary['steps']}-step DDPM loop (Fashion-MNIST UNet), batch {BATCH}, {summary['repetitions']} "
            f"repetitions: captured / direct median {summary['median_ratio']:.3f} (mean {summary['mean_ratio']:.3f}, "
            f"sd {summary['ratio_sd']:.3f}); median direct {summary['median_direct_s']:.2f} s, captured "
            f"{summary['median_captured_s']:.2f} s. Making the {summary['draws_per_call']} slots took "
            f"{summary['slot_seconds_per_call'] * 1e3:.1f} ms per call ({100 * summary['slot_share_of_direct']:.2f}% "
            "of a direct call).",
            "",
            markdown_table(frame.round(4)),
            "",
            f"Memory, small DDPM (3x32x32, batch {BATCH}), {lo} vs {hi} steps, peak RSS ratio "
            + "; ".join(
                f"{p}: whole process {r['peak_ratio']:.3f}, above the RSS before the estimate {r['above_before_ratio']:.3f}"
                for p, r in ratios.items()
            )
            + ".",
            "",
            markdown_table(mem.round(1)),
        ]
    )
    name = "capture_overhead_quick" if args.quick else "capture_overhead"
    write_results(
        args.out,
        name,
        title="Capture: time against a direct call, memory against the number of steps",
        intro=[
            f"Device: {device_name('cpu')}. Time: the same loop called directly and captured, alternating which "
            "runs first. Memory: each run in a fresh process (VmHWM reset before the estimate)."
        ],
        table=table,
        data={
            "time": summary,
            "time_rows": frame.to_dict(orient="records"),
            "memory": mem.to_dict(orient="records"),
            "memory_ratios": ratios,
        },
        notes=[
            "The direct call draws from torch's global generator; the captured call serves every draw from the "
            "design's counter-based stream, on demand, one slot at a time.",
            "The machine's 2 cores are shared with other work: timings of single calls move by several percent; "
            "the ratio of each alternating pair and their median are the figures to read.",
            "The fixed-noise path (DiffusersSampler) holds x_T and every step's noise of the batch at once, in "
            "float64 while the design makes it: its memory grows with the number of steps.",
        ],
    )
    return frame


if __name__ == "__main__":
    main()
