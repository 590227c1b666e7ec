"""Write a run's outputs: markdown report, JSON and CSV with the same numbers, the config, plots.

One table serves every output: :func:`summary_frame`, one row per (design,
statistic) with estimate, interval, width and efficiencies (pixel maps are
averaged over their pixels; their full maps go to ``pixel_maps.npz``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from uqdiff._util import plain
from uqdiff.cli.runs import RunOutput
from uqdiff.estimators.intervals import FEW_GROUPS
from uqdiff.estimators.results import ComparisonResult, markdown_table

#: How the report names each interval method.
INTERVAL_NAMES = {
    "skew-t": "Student-t, corrected for the skewness of the group means,",
    "t": "Student-t",
    "normal": "normal-quantile",
}

NOTES = {
    "efficiency": "efficiency = (CI width of MC / CI width of the design)^2 at the same budget of model calls",
    "implied_efficiency": "implied_efficiency = marginal variance / (group size x variance of group means), "
    "the same ratio estimated within the run (empty for groups of one)",
    "truth": "truth = the exact answer, known in closed form for this model; covers_truth = share of the "
    "intervals (one per pixel for maps) that contain it",
}


def summary_frame(output: RunOutput):
    """One row per (statistic, design): the numbers of report.md, results.csv and results.json."""
    has_mc = "mc" in output.estimates
    baseline = "mc" if has_mc else next(iter(output.estimates))
    frame = ComparisonResult(estimates=output.estimates, baseline=baseline).to_frame()
    if not has_mc:
        frame = frame.drop(columns="efficiency")
    if output.truths:
        truth, covers = [], []
        for row in frame.itertuples(index=False):
            t = output.truths.get(row.statistic)
            r = output.estimates[row.design][row.statistic]
            truth.append(math.nan if t is None else float(np.mean(t)))
            covers.append(math.nan if t is None else float(np.mean((r.low <= t) & (t <= r.high))))
        frame["truth"], frame["covers_truth"] = truth, covers
    return frame


def write_outputs(output: RunOutput, folder: str | Path) -> list[Path]:
    """Write everything into ``folder`` (created if needed); returns the paths written."""
    from uqdiff.cli import plots

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    frame = summary_frame(output)
    written = [folder / "results.csv", folder / "results.json", folder / "config.yaml"]
    frame.to_csv(written[0], index=False)
    written[1].write_text(json.dumps(_json(output, frame), indent=2, allow_nan=False) + "\n")
    written[2].write_text(yaml_text(output.config.to_dict()))
    maps = _maps(output)
    if maps:
        np.savez_compressed(folder / "pixel_maps.npz", **maps)
        written.append(folder / "pixel_maps.npz")
    figures = plots.write_plots(output, frame, folder) if output.config.plots else []
    report = folder / "report.md"
    report.write_text(markdown_report(output, frame, [p.name for p in figures]))
    return [report, *written, *figures]


def markdown_report(output: RunOutput, frame, figures: list[str]) -> str:
    """The report: what ran, the table, diagnostics, plots, how to reproduce, config, model, versions."""
    cfg = output.config
    total = sum(output.seconds.values())
    per_design = ", ".join(f"{output.labels[d]} {s:.1f} s" for d, s in output.seconds.items())
    designs = ", ".join(f"`{output.labels[d]}` ({d})" for d in output.estimates)
    lines = [
        f"# uqdiff {cfg.command}: {output.model.description}",
        "",
        *conclusion(frame, cfg.confidence_level),
        "",
        f"Budget {cfg.budget} model evaluations per design; seed {cfg.seed}; "
        f"{cfg.confidence_level:.0%} {INTERVAL_NAMES[cfg.interval_method]} intervals; "
        f"batch size {cfg.batch_size}. Designs: {designs}. Run time {total:.1f} s ({per_design}).",
        "",
        "## Results",
        "",
        markdown_table(frame),
        "",
    ]
    lines += [f"- {text}" for column, text in NOTES.items() if column in frame.columns]
    maps = [name for name, s in output.statistics.items() if _is_map(output, name)]
    if maps:
        lines.append(
            f"- {', '.join(maps)}: one value per pixel; its row averages estimate, interval and width over "
            "the pixels (full maps in `pixel_maps.npz`)"
        )
    if output.correlations is not None:
        summary = output.correlations.summary()
        lines += [
            "",
            "## PN vs RR correlations",
            "",
            f"Per-pair Pearson correlation of the images of {len(output.correlations.pn_standard)} antithetic "
            f"(PN) pairs and {len(output.correlations.rr_standard)} independent (RR) pairs, the first images "
            "of the antithetic and MC runs; centralized: after subtracting each scheme's mean image. "
            "Mean (SD):",
            "",
            "| | PN | RR |",
            "|---|---|---|",
            f"| standard | {summary['pn_standard']} | {summary['rr_standard']} |",
            f"| centralized | {summary['pn_centralized']} | {summary['rr_centralized']} |",
        ]
    if figures:
        lines += ["", "## Plots", ""] + [f"![{name}]({name})" for name in figures]
    lines += [
        "",
        "## Reproduce",
        "",
        "```bash",
        f"uqdiff {cfg.command} --config {Path(cfg.out) / 'config.yaml'} --out {Path(cfg.out)}-rerun",
        "```",
        "",
        "## Config",
        "",
        "```yaml",
        yaml_text(cfg.to_dict()).rstrip(),
        "```",
        "",
        "## Model",
        "",
        f"`{output.model.spec}`, options {output.model.options or 'none'}",
        "",
        _key_values(output.model.identity),
        "",
        "## Environment",
        "",
        _key_values(output.environment),
        "",
    ]
    return "\n".join(lines)


def conclusion(frame, confidence_level: float) -> list[str]:
    """One sentence per statistic that states the result: the estimate and interval, or which design wins.

    With one design: its estimate and interval. With several: the design with the narrowest
    interval, its efficiency against MC and the within-run interval of that efficiency, flagged
    when it rests on few groups. Statistics are on the scale of their definition (pixel
    statistics on [0, 1] unless given a ``scale``).
    """
    level = f"{confidence_level:.0%}"
    out = []
    for statistic, rows in frame.groupby("statistic", sort=False):
        if len(rows) == 1 or "efficiency" not in rows:
            for r in rows.itertuples(index=False):
                out.append(
                    f"- **{statistic}** under {r.design}: {r.estimate:.5g} ({level} CI {r.low:.5g} .. {r.high:.5g}, "
                    f"{r.n_groups} groups){_few(r.n_groups)}."
                )
            continue
        others = rows[rows.design != "mc"]
        best = (others if len(others) else rows).sort_values("width").iloc[0]
        implied = (
            f"; within-run {best.implied_efficiency:.3g} ({best.implied_low:.3g} .. {best.implied_high:.3g})"
            if "implied_efficiency" in rows and np.isfinite(best.implied_efficiency)
            else ""
        )
        out.append(
            f"- **{statistic}**: {best.design} gives the narrowest interval, {best.efficiency:.3g}x as efficient as "
            f"MC at the same budget{implied}{_few(best.n_groups)}; estimate {best.estimate:.5g} ({level} CI "
            f"{best.low:.5g} .. {best.high:.5g})."
        )
    return out


def _few(n_groups) -> str:
    return f" (only {int(n_groups)} groups: a rough figure)" if n_groups < FEW_GROUPS else ""


def _json(output: RunOutput, frame) -> dict[str, Any]:
    rows = [{k: plain(v) for k, v in row.items()} for row in frame.to_dict("records")]
    out = {
        "command": output.config.command,
        "config": output.config.to_dict(),
        "model": {
            "spec": output.model.spec,
            "description": output.model.description,
            "identity": output.model.identity,
        },
        "designs": output.labels,
        "seconds": output.seconds,
        "results": rows,
        "environment": output.environment,
    }
    if output.truths:
        out["truths"] = {k: np.asarray(v).tolist() for k, v in output.truths.items()}
    if output.correlations is not None:
        out["pn_rr_correlations"] = {
            k: {"mean": plain(v.mean), "sd": plain(v.sd)} for k, v in output.correlations.summary().items()
        }
        out["pn_rr_correlations"]["pairs"] = len(output.correlations.pn_standard)
    return out


def _maps(output: RunOutput) -> dict[str, np.ndarray]:
    maps = {}
    for design, est in output.estimates.items():
        for name, r in est.results.items():
            if np.ndim(r.estimate):
                maps[f"{output.labels[design]}/{name}/estimate"] = np.asarray(r.estimate)
                maps[f"{output.labels[design]}/{name}/width"] = np.asarray(r.width)
    return maps


def _is_map(output: RunOutput, name: str) -> bool:
    return any(np.ndim(est[name].estimate) for est in output.estimates.values())


def yaml_text(values: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(values, sort_keys=False)


def _key_values(values: dict[str, Any]) -> str:
    return "\n".join(["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in values.items()])
