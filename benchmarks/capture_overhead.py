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
import math
import subprocess
import sys
import time
from pathlib import Path

import _common  # noqa: F401  (first: puts this checkout's uqdiff on the path)
import numpy as np
import pandas as pd
import torch
from _common import add_common_arguments, device_name, write_results
from torch.overrides import TorchFunctionMode

from uqdiff.designs import IID
from uqdiff.estimators.results import markdown_table
from uqdiff.estimators.settings import RunSettings
from uqdiff.samplers import Captured

BATCH = 32
F = torch.nn.functional


def timed_in_turn(paths: list, rep: int, per: int = 1) -> tuple[str, dict[str, float]]:
    """Run each (name, fn) once, side by side, each path first in turn; (first name, seconds / ``per``)."""
    n = len(paths)
    order = paths[rep % n :] + paths[: rep % n]  # each path first in turn
    if n > 2 and (rep // n) % 2:  # and the others in both orders
        order = order[:1] + order[:0:-1]
    times = {}
    for name, run in order:
        t0 = time.perf_counter()
        run(rep)
        times[name] = (time.perf_counter() - t0) / per
    return order[0][0], times


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
        first, times = timed_in_turn([("direct", direct), ("captured", through_capture)], rep)
        rows.append({"repetition": rep, "first": first, **times, "ratio": times["captured"] / times["direct"]})
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


# -- a 20-step DPS loop: the per-call cost of capture where it is largest (small model, many ops) --------
class SmallDenoiser(torch.nn.Module):
    """A small conv-net noise predictor for 1x28x28 images (random weights): many cheap ops per step."""

    def __init__(self, channels: int = 32, blocks: int = 3) -> None:
        super().__init__()
        nn = torch.nn
        self.inp = nn.Conv2d(1, channels, 3, padding=1)
        self.time = nn.Linear(1, channels)
        self.norms = nn.ModuleList(nn.GroupNorm(8, channels) for _ in range(blocks))
        self.convs = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1) for _ in range(blocks))
        self.out = nn.Conv2d(channels, 1, 3, padding=1)

    def forward(self, x: torch.Tensor, t: float) -> torch.Tensor:
        emb = self.time(torch.full((len(x), 1), t, dtype=x.dtype))
        h = F.silu(self.inp(x) + emb[:, :, None, None])
        for norm, conv in zip(self.norms, self.convs):
            h = h + conv(F.silu(norm(h)))
        return self.out(F.silu(h))


def dps_loop(net: torch.nn.Module, steps: int, zeta: float = 0.5):
    """DPS as research code writes it: x_T and each step's noise drawn inside, a gradient through the denoiser."""
    alphas = torch.linspace(0.9999, 0.98, 1000).cumprod(0)
    ab = alphas[torch.linspace(999, 0, steps).long()].tolist() + [1.0]
    mask = torch.ones(1, 1, 28, 28)
    mask[..., 8:20, 8:20] = 0.0  # box inpainting
    y = mask * torch.linspace(-1, 1, 28 * 28).reshape(1, 1, 28, 28)

    def sample(n: int) -> torch.Tensor:
        x = torch.randn(n, 1, 28, 28)
        for i in range(steps):
            x = x.detach().requires_grad_(True)
            eps = net(x, i / steps)
            x0 = (x - math.sqrt(1 - ab[i]) * eps) / math.sqrt(ab[i])
            loss = (mask * x0 - y).pow(2).sum()
            (grad,) = torch.autograd.grad(loss, x)
            sigma = math.sqrt((1 - ab[i + 1]) / (1 - ab[i]) * (1 - ab[i] / ab[i + 1]))
            mean = math.sqrt(ab[i + 1]) * x0 + math.sqrt(max(1 - ab[i + 1] - sigma**2, 0.0)) * eps
            x = (mean + sigma * torch.randn_like(x) - zeta * grad).detach()
        return x

    return sample


class _CountCalls(TorchFunctionMode):
    """Counts the torch calls a captured run intercepts (every overridable call, properties included)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


class _NoOpMode(TorchFunctionMode):
    """A mode that only passes each call on: the floor any TorchFunctionMode costs, whatever it does."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        return func(*args, **kwargs) if kwargs else func(*args)


def dps_overhead(batches: tuple[int, ...], steps: int, reps: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Alternating (direct, captured, no-op mode) runs of the DPS loop at each batch size; one row per repetition.

    The no-op mode runs the loop under a TorchFunctionMode that only passes calls on: the part of the
    overhead that is torch's dispatch to any mode, which capture cannot lower.
    """
    torch.manual_seed(seed)  # the random weights
    net = SmallDenoiser().eval()
    loop = dps_loop(net, steps)
    captured = Captured(loop)
    rows, summary = [], []
    for batch in batches:
        calls = max(1, 8 // batch)  # time several calls at small batches: a single one is a few ms
        stream = IID().stream(np.arange(batch), seed=seed)

        def direct(rep):
            torch.manual_seed(seed + rep)
            for _ in range(calls):
                loop(batch)

        def through_capture(rep):
            for _ in range(calls):
                captured(stream)

        def no_op_mode(rep):
            torch.manual_seed(seed + rep)
            with _NoOpMode():
                for _ in range(calls):
                    loop(batch)

        direct(0), through_capture(0)  # warm up both paths
        with _CountCalls() as counter:
            loop(batch)
        for rep in range(reps):
            paths = [("direct", direct), ("captured", through_capture), ("no_op_mode", no_op_mode)]
            first, times = timed_in_turn(paths, rep, per=calls)
            rows.append({"batch": batch, "repetition": rep, "first": first, **times})
        frame = pd.DataFrame([r for r in rows if r["batch"] == batch])
        ratio = frame.captured / frame.direct
        summary.append(
            {
                "batch": batch,
                "repetitions": reps,
                "calls_per_timing": calls,
                "median_direct_ms": 1e3 * float(frame.direct.median()),
                "median_captured_ms": 1e3 * float(frame.captured.median()),
                "median_ratio": float(ratio.median()),
                "min_ratio": float(ratio.min()),
                "max_ratio": float(ratio.max()),
                "ratio_iqr": float(ratio.quantile(0.75) - ratio.quantile(0.25)),
                "median_no_op_mode_ratio": float((frame.no_op_mode / frame.direct).median()),
                "torch_calls_per_run": counter.count,
                "us_per_intercepted_call": 1e6 * float((frame.captured - frame.direct).median()) / counter.count,
            }
        )
    out = pd.DataFrame(rows)
    out["ratio"] = out.captured / out.direct
    out["no_op_ratio"] = out.no_op_mode / out.direct
    return out, pd.DataFrame(summary)


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
    estimate(
        generator,
        lambda x: x.mean(dim=(1, 2, 3)),
        budget=BATCH,
        design="antithetic",
        seed=0,
        run=RunSettings(batch_size=BATCH),
    )
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
    parser.add_argument(
        "--dps",
        action="store_true",
        help="only the DPS loop (small conv net, gradient step, randn_like each step) at batch 1 and 32, "
        "written to capture_overhead_dps[_quick]",
    )
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        memory_child(args.child[0], int(args.child[1]), args.seed)
        return None
    if args.quick:
        args.steps, args.reps, args.memory_steps, args.no_fixed = 2, 2, (5, 10), True
    if args.dps:
        return dps_main(args)

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


def dps_main(args) -> pd.DataFrame:
    """The DPS part alone: time ratios at batch 1 and 32, against the goal of 1.05 and 1.02."""
    rows, summary = dps_overhead((1, 32), args.steps, args.reps, args.seed)
    print(markdown_table(summary.round(4)))
    goals = {1: 1.05, 32: 1.02}
    lines = [
        f"{args.steps}-step DPS loop (1x28x28, a conv-net denoiser of {sum(p.numel() for p in SmallDenoiser().parameters())} "
        "parameters with a gradient through it, box-inpainting consistency step, torch.randn_like each step), "
        f"{args.reps} alternating repetitions per batch size:",
        "",
    ]
    for _, r in summary.iterrows():
        goal = goals[int(r.batch)]
        lines.append(
            f"- batch {int(r.batch)}: captured / direct median {r.median_ratio:.3f} (range {r.min_ratio:.3f}-"
            f"{r.max_ratio:.3f}, IQR {r.ratio_iqr:.3f}), goal {goal}: {'met' if r.median_ratio <= goal else 'missed'}; "
            f"a no-op TorchFunctionMode alone costs {r.median_no_op_mode_ratio:.3f}; {int(r.torch_calls_per_run)} torch "
            f"calls intercepted per run, {r.us_per_intercepted_call:.1f} us each over direct."
        )
    table = "\n".join([*lines, "", markdown_table(summary.round(4)), "", markdown_table(rows.round(5))])
    write_results(
        args.out,
        "capture_overhead_dps_quick" if args.quick else "capture_overhead_dps",
        title="Capture: time of a DPS loop against a direct call, batch 1 and 32",
        intro=[
            f"Device: {device_name('cpu')}. Times are per sampler call (several calls per timing at batch 1), "
            "direct, captured and under a no-op mode in rotating order."
        ],
        table=table,
        data={"summary": summary.to_dict(orient="records"), "rows": rows.to_dict(orient="records")},
        notes=[
            "direct: torch's global generator; captured: uqdiff.samplers.Captured on an IID design's stream.",
            "The no-op mode is the floor of any TorchFunctionMode: torch hands every overridable call (properties, "
            "Python-level functions such as F.group_norm, which it runs twice) to Python.",
            "The rest of the gap is capture's own: its dictionary lookup per call, and making each slot of the "
            "design's counter-based stream (uqdiff.designs.streams) where direct code calls torch's generator.",
        ],
    )
    return rows


if __name__ == "__main__":
    main()
