"""The ``uqdiff`` command: from a question to a report in one command.

Subcommands live in :data:`SUBCOMMANDS`; each is a :class:`Subcommand` (its
flags and the function that runs it), so a new one is a few lines:
``register(Subcommand("evaluate", help=..., examples=..., add_arguments=..., run=...))``.
Bad flags and configs end with one line ``uqdiff: error: <field>: ...`` and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from uqdiff.cli.config import (
    ConfigError,
    RunConfig,
    cli_statistics,
    design_names,
    load_config_file,
    merge,
    parse_assignments,
)
from uqdiff.models import MODEL_OPTIONS

CONFIG_EXAMPLE = """\
config file (TOML or YAML, the same fields as the flags; flags override it):
  # run.toml
  model = "terrain"
  designs = ["mc", "antithetic", "kantithetic:8", "rqmc:16"]
  statistics = ["mean", "contrast", "slope"]
  budget = 64
  batch_size = 16
  out = "results/terrain"
  [model_options]
  difficulty = 30
"""


@dataclass(frozen=True)
class Subcommand:
    """One ``uqdiff <name>``: its flags (besides the common ones) and what it runs."""

    name: str
    help: str
    examples: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[RunConfig], int]


SUBCOMMANDS: dict[str, Subcommand] = {}


def register(sub: Subcommand) -> Subcommand:
    SUBCOMMANDS[sub.name] = sub
    return sub


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``uqdiff: error: <message>``, exit code 2."""

    def error(self, message: str):
        self.exit(2, f"uqdiff: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="uqdiff",
        allow_abbrev=False,
        description="Estimate E[S(G(z))], z ~ N(0, I), for a diffusion model G and statistics S, with confidence "
        "intervals, using noise designs that keep every noise N(0, I). Writes a markdown report, "
        "JSON, CSV and plots to the output folder.",
        epilog="run 'uqdiff <command> --help' for the flags and examples of a command",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="command", parser_class=_Parser)
    for sub in SUBCOMMANDS.values():
        p = commands.add_parser(
            sub.name,
            help=sub.help,
            description=sub.help,
            epilog=f"examples:\n{sub.examples}\n{CONFIG_EXAMPLE}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
            argument_default=argparse.SUPPRESS,
            allow_abbrev=False,  # an old flag such as --interval must not pass as an abbreviation
        )
        sub.add_arguments(p)
        _add_common_arguments(p)
    return parser


def _add_common_arguments(p: argparse.ArgumentParser) -> None:
    d = RunConfig()
    models = "; ".join(f"{m}: {', '.join(o)}" for m, o in MODEL_OPTIONS.items())
    p.add_argument("--config", metavar="FILE", help="TOML (.toml) or YAML (.yaml, .yml) file with these fields")
    p.add_argument(
        "--model",
        help=f"terrain (terrain consistency model), fashion (Fashion-MNIST DDPM), oracle "
        f"(clipped Gaussian DDIM with exact answers; cheap) or module:callable: a "
        f"generator (has noise_shape) or a factory called with the model options "
        f"(default {d.model})",
    )
    p.add_argument(
        "-O",
        "--model-option",
        dest="model_options",
        metavar="KEY=VALUE",
        action="append",
        help=f"model option, repeatable; values parse as JSON else text. Options: {models}",
    )
    p.add_argument(
        "--statistics",
        nargs="+",
        metavar="NAME",
        help=f"statistics, each NAME or NAME:key=value (e.g. mean:scale=255); allowed: "
        f"{', '.join(cli_statistics())} (default: the model's own list)",
    )
    p.add_argument(
        "--budget",
        type=int,
        help=f"noises drawn per design (= model evaluations; per image in evaluate) (default {d.budget})",
    )
    p.add_argument("--batch-size", type=int, help=f"noises per model call (default {d.batch_size})")
    p.add_argument("--device", help="torch device, e.g. cpu or cuda (default: the model's)")
    p.add_argument("--seed", type=int, help=f"non-negative integer; same seed, same numbers (default {d.seed})")
    p.add_argument("--confidence-level", type=float, metavar="LEVEL", help=f"in (0, 1) (default {d.confidence_level})")
    p.add_argument(
        "--interval-method",
        choices=("skew-t", "t", "normal"),
        help="skew-t: Student-t corrected for the skewness of the group means (default); "
        "t: Student-t on groups - 1 df; normal: the normal quantile",
    )
    p.add_argument(
        "--out",
        metavar="FOLDER",
        help=f"output folder, created if needed; one holding another run's results is refused "
        f"(default: a fresh folder per run under {d.out}/)",
    )
    p.add_argument("--no-plots", dest="plots", action="store_false", help="skip the PNG plots")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no printed summary")


def _design_help() -> str:
    return (
        f"SPEC is name or name:param:... ; names: {', '.join(design_names())}; e.g. mc, antithetic, "
        "kantithetic:8 (group of 8), rqmc:16 (16 Sobol' points per replicate), equicorrelated:4:-0.2"
    )


def _estimate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--design",
        dest="designs",
        metavar="SPEC",
        type=lambda s: (s,),
        help=f"the noise design (default antithetic). {_design_help()}",
    )


def _compare_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--designs",
        nargs="+",
        metavar="SPEC",
        help=f"designs to compare at the same budget; mc is added as the baseline when missing "
        f"(default mc antithetic kantithetic:8 rqmc:16). {_design_help()}",
    )
    p.add_argument(
        "--pairs",
        type=int,
        help="PN and RR image pairs kept from the antithetic and MC runs for the "
        "correlation histograms (default 32; 0: none)",
    )


def _run_and_report(config: RunConfig) -> int:
    from uqdiff.cli.report import summary_frame, write_outputs
    from uqdiff.cli.runs import run
    from uqdiff.estimators.results import markdown_table

    output = run(config)
    paths = write_outputs(output, config.out)
    if not config.quiet:
        print(
            f"uqdiff {config.command}: {output.model.description}; budget {config.budget} noises "
            f"(= model evaluations) per design, seed {config.seed}"
        )
        print(markdown_table(summary_frame(output)))
        print(f"wrote {len(paths)} files to {config.out}/ (report: {paths[0]})")
    return 0


register(
    Subcommand(
        name="estimate",
        help="estimate the statistics with one noise design and a confidence interval",
        examples="""\
  uqdiff estimate --model oracle --budget 256
  uqdiff estimate --model terrain -O difficulty=30 --design kantithetic:8 --budget 64 --out results/terrain
  uqdiff estimate --model fashion -O class_label=7 -O steps=20 --statistics mean pixel_map --budget 32
  uqdiff estimate --model mypackage.models:make_generator -O width=64 --statistics mean
""",
        add_arguments=_estimate_arguments,
        run=_run_and_report,
    )
)

register(
    Subcommand(
        name="compare",
        help="compare noise designs at the same budget of model calls (widths and efficiencies against MC)",
        examples="""\
  uqdiff compare --model oracle --budget 512 --designs mc antithetic kantithetic:8 rqmc:16
  uqdiff compare --model terrain --budget 64 --batch-size 16 --statistics mean contrast slope
  uqdiff compare --model fashion -O class_label=0 -O steps=20 --statistics mean pixel_map --budget 64
  uqdiff compare --config run.toml --seed 3 --out results/seed3
""",
        add_arguments=_compare_arguments,
        run=_run_and_report,
    )
)


def _evaluate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--solver", help="dps (fashion only: needs network gradients) or dds (default dds)")
    p.add_argument(
        "--solvers",
        nargs="+",
        metavar="NAME",
        help="two or more solvers (dps, dds, rsd or module:factory taking a measurement) compared over the images "
        "on common noise: population means with two-level intervals, Holm-adjusted differences, a ranking "
        "(uqdiff.evaluate_solvers; one design, default antithetic, antithetic-sets:4 with rsd)",
    )
    p.add_argument(
        "--task",
        help="fashion: inpainting, super_resolution, gaussian_blur; terrain: inpainting, "
        "super_resolution (default inpainting)",
    )
    p.add_argument(
        "--images", type=int, help="ground-truth images (Fashion-MNIST test set / held-out terrains; default 2)"
    )
    p.add_argument("--sigma-y", type=float, help="measurement noise on the [-1, 1] scale (default 0.05)")
    p.add_argument("--steps", type=int, help="solver steps (default: fashion 50, terrain 10)")
    p.add_argument(
        "--designs",
        nargs="+",
        metavar="SPEC",
        help=f"designs at the same budget of posterior samples per image; mc is added (default mc "
        f"antithetic). {_design_help()}",
    )


def _evaluate(config: RunConfig) -> int:
    """Run a solver on ground truths under each design; write report.md, results.json and CSV tables."""
    from pathlib import Path

    from uqdiff.estimators.settings import RunSettings
    from uqdiff.estimators.solvers import RECONSTRUCTION_STATISTICS, evaluate_solver
    from uqdiff.models.problems import TASKS, ground_truths, solver_factory
    from uqdiff.statistics import STATISTICS

    truths, source = ground_truths(config.model, config.images)
    if config.solvers:
        return _rank_solvers(config, truths, source)
    make = solver_factory(config.model, config.solver, steps=config.steps, device=config.device)
    params = TASKS[config.model][config.task]
    designs = list(config.design_objects())
    ev = evaluate_solver(
        make,
        truths,
        config.task,
        budget=config.budget,
        designs=designs,
        statistics=[STATISTICS[s] for s in config.statistics or RECONSTRUCTION_STATISTICS],
        sigma_y=config.sigma_y,
        operator_params=params,
        seed=config.seed,
        confidence_level=config.confidence_level,
        interval_method=config.interval_method,
        name=config.solver.upper(),
        run=RunSettings(batch_size=config.batch_size, progress=not config.quiet),
    )
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    ev.per_image.to_csv(out / "per_image.csv", index=False)
    ev.summary.to_csv(out / "results.csv", index=False)
    _write_evaluation(
        config, ev, source, title=config.solver.upper(), samples=f"{len(truths)} ground truths", per="design"
    )
    if not config.quiet:
        print(ev.to_markdown())
        print(f"wrote report.md, results.json, results.csv, per_image.csv and config.yaml to {out}/")
    return 0


def _write_evaluation(
    config: RunConfig, result, source, *, title: str, samples: str, per: str, figures: dict[str, str] | None = None
) -> None:
    """results.json, config.yaml and report.md of an ``evaluate`` run (one solver or several); ``figures``:
    the PNGs written to the output folder, each with a caption for the report."""
    import json
    from pathlib import Path

    from uqdiff.cli.report import yaml_text
    from uqdiff.cli.runs import environment

    out, versions = Path(config.out), environment()
    plots = "".join(f"![{name}]({name})\n\n{caption}\n\n" for name, caption in (figures or {}).items())
    (out / "results.json").write_text(
        json.dumps(
            {**result.to_dict(), "ground_truth": source, "versions": versions, "run_config": config.to_dict()},
            indent=2,
            default=str,
        )
        + "\n"
    )
    (out / "config.yaml").write_text(yaml_text(config.to_dict()))
    (out / "report.md").write_text(
        f"# uqdiff evaluate: {title} on {config.model} {config.task}\n\n"
        f"{samples} ({json.dumps(source)}), {config.budget} posterior samples per image and {per}, seed "
        f"{config.seed}, confidence level {config.confidence_level}.\n\n{result.to_markdown()}\n"
        + (f"## Plots\n\n{plots}" if plots else "")
        + f"## Config\n\n```yaml\n{yaml_text(config.to_dict())}```\n\n## Versions\n\n"
        + "".join(f"- {k}: {v}\n" for k, v in versions.items())
    )


def _rank_solvers(config: RunConfig, truths, source) -> int:
    """Several solvers over the same images on common noise: leaderboard, differences, ranking."""
    from pathlib import Path

    from uqdiff.estimators.population import evaluate_solvers
    from uqdiff.estimators.settings import RunSettings
    from uqdiff.estimators.solvers import RECONSTRUCTION_STATISTICS
    from uqdiff.models.problems import PARTICLE_SOLVERS, RSD_PARTICLES, SOLVERS, TASKS, solver_factory
    from uqdiff.statistics import STATISTICS

    factories = {}
    for name in config.solvers:
        if name in SOLVERS + PARTICLE_SOLVERS:
            factories[name.upper()] = solver_factory(config.model, name, steps=config.steps, device=config.device)
        else:
            factories[name] = _import_factory(name)
    # RSD moves sets of interacting particles: a set of independent noises and its negation is one group,
    # antithetic between sets (uqdiff.AntitheticSets); for the other solvers, antithetic pairs
    particle_sets = any(name in PARTICLE_SOLVERS for name in config.solvers)
    default = f"antithetic-sets:{RSD_PARTICLES}" if particle_sets else "antithetic"
    design = config.designs[0] if config.designs else default
    c = evaluate_solvers(
        factories,
        truths,
        config.task,
        budget=config.budget,
        design=design,
        statistics=[STATISTICS[s] for s in config.statistics or RECONSTRUCTION_STATISTICS],
        sigma_y=config.sigma_y,
        operator_params=TASKS[config.model][config.task],
        seed=config.seed,
        confidence_level=config.confidence_level,
        run=RunSettings(batch_size=config.batch_size, progress=not config.quiet),
    )
    out = Path(config.out)
    frame = c.to_frame()
    frame[frame.kind == "mean"].dropna(axis=1, how="all").to_csv(out / "leaderboard.csv", index=False)
    frame[frame.kind == "difference"].dropna(axis=1, how="all").to_csv(out / "differences.csv", index=False)
    figures = {}
    if config.plots:
        from uqdiff.cli.solver_plots import CAPTIONS, write_solver_plots

        figures = {p.name: CAPTIONS[p.name] for p in write_solver_plots(c, out)}
    _write_evaluation(
        config,
        c,
        source,
        title=", ".join(factories),
        samples=f"{len(truths)} ground truths",
        per=f"solver on common noise ({design})",
        figures=figures,
    )
    if not config.quiet:
        print(c.conclusion())
        plots = "".join(f", {name}" for name in figures)
        print(f"wrote report.md, leaderboard.csv, differences.csv{plots}, results.json and config.yaml to {out}/")
    return 0


def _import_factory(spec: str):
    """``module:attr`` as a solver factory (measurement -> sampler)."""
    from uqdiff.models import UnknownModel, import_object

    try:
        obj = import_object(spec)
    except UnknownModel as err:
        raise ConfigError("solvers", str(err)) from None
    if not callable(obj):
        raise ConfigError("solvers", f"{spec!r} is not callable: give a factory measurement -> sampler")
    return obj


register(
    Subcommand(
        name="evaluate",
        help="evaluate an inverse-problem solver (DPS, DDS) on ground truths: L1, PSNR, SSIM with intervals per design",
        examples="""\
  uqdiff evaluate --model fashion --solver dds --task super_resolution --images 2 --budget 16
  uqdiff evaluate --model fashion --solver dps --task inpainting --steps 50 --designs mc antithetic rqmc:4
  uqdiff evaluate --model terrain --solver dds --task inpainting --budget 8 --out results/terrain-inpainting
  uqdiff evaluate --model fashion --solvers dps dds --task super_resolution --images 10 --budget 8 --steps 20
""",
        add_arguments=_evaluate_arguments,
        run=_evaluate,
    )
)


def _output_folder(config: RunConfig) -> RunConfig:
    """The run's own output folder, so a new run never mixes with an old one's files.

    Without ``--out`` each run gets a fresh folder ``uqdiff-output/<command>-<date>-<time>``; a
    folder given with ``--out`` that already holds a run's results is refused.
    """
    import dataclasses
    import time
    from pathlib import Path

    out = Path(config.out)
    if config.out == RunConfig.out:  # the default: a fresh folder per run under it
        base = out / f"{config.command}-{time.strftime('%Y%m%d-%H%M%S')}"
        out, n = base, 1
        while out.exists():
            n += 1
            out = base.with_name(f"{base.name}-{n}")
    elif any((out / name).exists() for name in ("results.json", "config.yaml")):
        raise ConfigError(
            "out",
            f"{str(out)!r} already holds the results of another run (results.json, config.yaml): give a new --out, "
            f"or remove those files, so that the two runs do not mix (without --out each run gets its own folder "
            f"under uqdiff-output/)",
        )
    _check_output_folder(str(out))
    return dataclasses.replace(config, out=str(out))


def _check_output_folder(out: str) -> None:
    """Create the output folder and check it is writable before any model call, so no run is lost at the end."""
    import os
    from pathlib import Path

    folder = Path(out)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError("out", f"cannot create the output folder {out!r} ({err.strerror or err})") from None
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise ConfigError("out", f"the output folder {out!r} is not a writable folder")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``uqdiff`` console script and ``python -m uqdiff``; returns the exit code."""
    parser = build_parser()
    try:
        args = vars(parser.parse_args(argv))
    except SystemExit as stop:  # --help (0) or a bad flag (2, message already printed)
        return int(stop.code or 0)
    command = args.pop("command")
    try:
        file_values = load_config_file(args.pop("config")) if "config" in args else {}
        if "model_options" in args:
            args["model_options"] = parse_assignments(args["model_options"], "model_options")
        config = RunConfig.from_mapping(merge(file_values, {**args, "command": command}))
        config = _output_folder(config)
        return SUBCOMMANDS[command].run(config)
    except ConfigError as err:
        print(f"uqdiff: error: {err}", file=sys.stderr)
        return 2
