"""Speed of scrambled Sobol' noise generation: uqdiff vs qmcpy 2.4 vs scipy, side by side.

Default size: d = 16384 dimensions, n = 64 points, R = 50 independent
randomizations (linear matrix scramble + digital shift), as in one RQMC
estimate of a 128x128 noise. Every method produces the full (R, n, d) array
from scratch (randomization included: qmcpy and scipy scramble their
generating matrices in the constructor, so the constructor is timed too).

Each timing is the best (minimum) of ``--repeats`` runs after one warm-up.
Ratios, not seconds, are what we report: ``ratio = t(qmcpy, same output) / t``,
where the qmcpy reference is its uniforms for uniform rows and its uniforms
followed by ``scipy.special.ndtri`` for Gaussian rows.

    python benchmarks/sobol_speed.py                       # full size, writes benchmarks/results/
    python benchmarks/sobol_speed.py --dim 256 --reps 4 --repeats 1 --out /tmp/sobol_bench
    python benchmarks/sobol_speed.py --quick               # d = 256, n = 16, R = 4, one timed run: sobol_speed_quick
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import time
import warnings

import _common  # noqa: F401  (first: puts this checkout's uqdiff on the path)
import numpy as np
import scipy
import scipy.special
import torch
from _common import RESULTS, add_common_arguments
from _common import machine_info as _machine_info
from scipy.stats import qmc

from uqdiff.designs.sobol_points import scrambled_sobol, scrambled_sobol_normal, to_uniform

DEFAULT_OUT = RESULTS  # the committed results sit at benchmarks/results/sobol_speed.{md,json}
QUICK = {"dim": 256, "n": 16, "reps": 4, "repeats": 1, "qmcpy_repeats": 1, "warmup": 0}


def _rngs(seed: int, count: int) -> list[np.random.Generator]:
    return [np.random.default_rng([seed, r]) for r in range(count)]


def _qmcpy_module():
    try:
        import qmcpy
    except ImportError:
        return None
    return qmcpy


def make_methods(dim: int, n: int, reps: int, qmcpy_mode: str, scipy_bits: int = 30) -> dict[str, dict]:
    """name -> {fn(seed) -> array, kind, ref}: every fn builds all R replicates from scratch."""
    m = n.bit_length() - 1
    methods: dict[str, dict] = {}

    methods["uqdiff lms+shift, Gaussian float32"] = dict(
        fn=lambda seed: scrambled_sobol_normal(m, dim, _rngs(seed, reps), scramble="lms+shift"),
        kind="gaussian",
    )
    methods["uqdiff lms+shift, uniform float64"] = dict(
        fn=lambda seed: to_uniform(scrambled_sobol(m, dim, _rngs(seed, reps), scramble="lms+shift")),
        kind="uniform",
    )
    methods["uqdiff owen (nested uniform), Gaussian float32"] = dict(
        fn=lambda seed: scrambled_sobol_normal(m, dim, _rngs(seed, reps), scramble="owen"),
        kind="gaussian",
        info=True,
    )

    qmcpy = _qmcpy_module()
    if qmcpy is not None:

        def qmcpy_uniform(seed: int) -> np.ndarray:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if qmcpy_mode == "replications":
                    net = qmcpy.DigitalNetB2(dim, replications=reps, randomize="LMS DS", seed=seed)
                    return net.gen_samples(n)  # (R, n, d)
                out = np.empty((reps, n, dim))
                for r in range(reps):
                    net = qmcpy.DigitalNetB2(dim, randomize="LMS DS", seed=[seed, r])
                    out[r] = net.gen_samples(n)
                return out

        methods["qmcpy LMS DS, uniform float64"] = dict(fn=qmcpy_uniform, kind="uniform", reference=True)
        methods["qmcpy LMS DS + ndtri, Gaussian float32"] = dict(
            fn=lambda seed: scipy.special.ndtri(qmcpy_uniform(seed)).astype(np.float32),
            kind="gaussian",
            reference=True,
        )

    def scipy_uniform(seed: int) -> np.ndarray:
        out = np.empty((reps, n, dim))
        for r, rng in enumerate(_rngs(seed, reps)):
            out[r] = qmc.Sobol(dim, scramble=True, bits=scipy_bits, seed=rng).random_base2(m)
        return out

    methods["scipy Sobol LMS+shift, uniform float64"] = dict(fn=scipy_uniform, kind="uniform")
    methods["scipy Sobol LMS+shift + ndtri, Gaussian float32"] = dict(
        fn=lambda seed: scipy.special.ndtri(scipy_uniform(seed)).astype(np.float32),
        kind="gaussian",
    )
    return methods


def best_time(fn, repeats: int, warmup: int = 1, seed: int = 0) -> float:
    for w in range(warmup):
        out = fn(seed + 1000 + w)
        del out
    times = []
    for r in range(repeats):
        start = time.perf_counter()
        out = fn(seed + r)
        times.append(time.perf_counter() - start)
        del out
    return min(times)


def machine_info() -> dict:
    qmcpy = _qmcpy_module()
    return _machine_info(
        affinity_cpus=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        scipy=scipy.__version__,
        qmcpy=getattr(qmcpy, "__version__", None) if qmcpy is not None else None,
    )


def to_markdown(result: dict) -> str:
    c, mi = result["config"], result["machine"]
    lines = [
        "# Scrambled Sobol' noise generation speed",
        "",
        f"Date: {result['date']}. d = {c['dim']}, n = {c['n']}, R = {c['reps']}; best of {c['repeats']} after "
        f"{c['warmup']} warm-up. qmcpy mode: {c['qmcpy_mode']}.",
        "",
        "Ratio = time of qmcpy producing the same kind of output (uniform or Gaussian) / time of the method; "
        "ratios > 1 mean faster than qmcpy.",
        "",
        "| method | output | seconds | ratio qmcpy / method |",
        "|---|---|---:|---:|",
    ]
    for row in result["rows"]:
        ratio = "n/a" if row["ratio_qmcpy_over_method"] is None else f"{row['ratio_qmcpy_over_method']:.2f}"
        lines.append(f"| {row['method']} | {row['kind']} | {row['seconds']:.4f} | {ratio} |")
    lines += ["", "Machine:", ""]
    lines += [f"- {k}: {v}" for k, v in mi.items()]
    lines += ["", "Notes:", ""] + [f"- {note}" for note in result["notes"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dim", type=int, default=16384, help="noise dimension d (default 16384)")
    parser.add_argument("--n", type=int, default=64, help="points per randomization, a power of two (default 64)")
    parser.add_argument("--reps", type=int, default=50, help="independent randomizations R (default 50)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per method; the minimum is kept")
    parser.add_argument("--qmcpy-repeats", type=int, default=None, help="timed repeats for qmcpy (default: --repeats)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed warm-up runs per method (default 1)")
    parser.add_argument(
        "--scipy-bits",
        type=int,
        default=30,
        help="scipy Sobol precision (default 30, scipy's own default; 52 costs ~3 s per replicate)",
    )
    parser.add_argument(
        "--scipy-repeats",
        type=int,
        default=1,
        help="timed repeats for scipy, run without warm-up (default 1: it is the slowest)",
    )
    parser.add_argument(
        "--qmcpy-mode",
        choices=["replications", "loop"],
        default="replications",
        help="qmcpy: one DigitalNetB2(replications=R) or R separately seeded nets (default replications)",
    )
    add_common_arguments(parser, "sobol_speed", out=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    if args.n < 1 or args.n & (args.n - 1):
        parser.error(f"--n must be a power of two, got {args.n}")
    if args.threads:
        torch.set_num_threads(args.threads)
    qmcpy_repeats = args.qmcpy_repeats or args.repeats

    methods = make_methods(args.dim, args.n, args.reps, args.qmcpy_mode, args.scipy_bits)
    seconds: dict[str, float] = {}
    for name, spec in methods.items():
        repeats = {"qmcpy": qmcpy_repeats, "scipy": args.scipy_repeats}.get(name.split()[0], args.repeats)
        warmup = 0 if name.startswith("scipy") else args.warmup
        seconds[name] = best_time(spec["fn"], repeats, warmup, args.seed)
        print(f"  {name:<50s} {seconds[name]:9.4f} s", flush=True)

    refs = {spec["kind"]: seconds[name] for name, spec in methods.items() if spec.get("reference")}
    rows = []
    for name, spec in methods.items():
        ref = refs.get(spec["kind"])
        rows.append(
            {
                "method": name,
                "kind": spec["kind"],
                "seconds": seconds[name],
                "ratio_qmcpy_over_method": (ref / seconds[name]) if ref is not None and seconds[name] > 0 else None,
                "for_information": bool(spec.get("info", False)),
            }
        )
    notes = [
        "uqdiff: 52-bit integer points, cell midpoints (x + 1/2) / 2**52, ndtri in float64 then cast to float32.",
        "qmcpy: DigitalNetB2(randomize='LMS DS') with its default t = 63 output bits; constructor (which draws "
        "the scramble) is timed together with gen_samples.",
        f"scipy: qmc.Sobol(d, scramble=True, bits={args.scipy_bits}) per replicate (LMS + digital shift), "
        f"constructor timed, random_base2(log2 n); {args.scipy_repeats} timed run(s), no warm-up.",
        "owen rows are nested uniform scrambling, a stronger randomization; listed for information.",
    ]
    if _qmcpy_module() is None:
        notes.append("qmcpy not installed: no ratios.")
    result = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": {
            "quick": args.quick,
            "seed": args.seed,
            "dim": args.dim,
            "n": args.n,
            "reps": args.reps,
            "repeats": args.repeats,
            "qmcpy_repeats": qmcpy_repeats,
            "warmup": args.warmup,
            "qmcpy_mode": args.qmcpy_mode,
            "scipy_bits": args.scipy_bits,
            "scipy_repeats": args.scipy_repeats,
        },
        "machine": machine_info(),
        "rows": rows,
        "notes": notes,
    }

    print()
    print(f"{'method':<50s} {'output':<9s} {'seconds':>10s} {'qmcpy/method':>13s}")
    for row in rows:
        ratio = "n/a" if row["ratio_qmcpy_over_method"] is None else f"{row['ratio_qmcpy_over_method']:.2f}"
        print(f"{row['method']:<50s} {row['kind']:<9s} {row['seconds']:10.4f} {ratio:>13s}")

    name = "sobol_speed_quick" if args.quick else "sobol_speed"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / f"{name}.md").write_text(to_markdown(result))
    print(f"\nwrote {args.out / name}.json and .md")
    return result


if __name__ == "__main__":
    main()
