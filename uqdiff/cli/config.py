"""The run configuration of the command line: one frozen record, from a TOML/YAML file and flags.

A config file holds the same fields as the flags (``batch_size`` or
``batch-size``), e.g.::

    model = "terrain"
    designs = ["mc", "antithetic", "kantithetic:8", "rqmc:16"]
    statistics = ["mean", "contrast"]
    budget = 64
    [model_options]
    difficulty = 30

Flags given on the command line override the file; ``model_options`` merge
key by key. Every check fails with a :class:`ConfigError` whose message starts
with the field name and says what is allowed, so the command line can print
it as one line.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from uqdiff.designs import DESIGNS, NoiseDesign, parse_design
from uqdiff.estimators.intervals import INTERVAL_METHODS
from uqdiff.statistics import STATISTICS, ReconstructionStatistic, Statistic

#: Designs each command runs when none are given.
DEFAULT_DESIGNS: dict[str, tuple[str, ...]] = {
    "estimate": ("mc",),
    "compare": ("mc", "antithetic", "kantithetic:8", "rqmc:16"),
    "evaluate": ("mc", "antithetic"),
}
CONFIG_SUFFIXES = (".toml", ".yaml", ".yml")


class ConfigError(ValueError):
    """A bad field of the run config; ``str()`` is ``"<field>: <what is wrong and what is allowed>"``."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


@dataclass(frozen=True)
class RunConfig:
    """Everything a command-line run depends on; validated on construction.

    Empty ``statistics`` mean the model's defaults and empty ``designs`` the
    command's (:data:`DEFAULT_DESIGNS`). ``pairs`` is the number of PN and RR
    image pairs kept for the correlation diagnostics of ``compare`` (0: none).

    >>> RunConfig(model="oracle", budget=64).budget
    64
    >>> RunConfig(budget=0)
    Traceback (most recent call last):
    ...
    uqdiff.cli.config.ConfigError: budget: must be a positive integer (noises per design; per image in evaluate), got 0
    """

    command: str = "estimate"
    model: str = "oracle"
    model_options: dict[str, Any] = field(default_factory=dict)
    statistics: tuple[str, ...] = ()
    designs: tuple[str, ...] = ()
    budget: int = 256
    batch_size: int = 32
    device: str | None = None
    seed: int = 0
    confidence_level: float = 0.95
    interval_method: str = "skew-t"
    out: str = "uqdiff-output"
    pairs: int = 32
    plots: bool = True
    quiet: bool = False
    # ``evaluate`` only: an inverse problem on the project's models (uqdiff.models.problems)
    solver: str = "dds"
    #: ``evaluate`` with two or more: compare them over the images (uqdiff.evaluate_solvers)
    solvers: tuple[str, ...] = ()
    task: str = "inpainting"
    images: int = 2
    sigma_y: float = 0.05
    steps: int | None = None

    def __post_init__(self) -> None:
        _check(
            isinstance(self.model, str) and self.model.strip() != "",
            "model",
            f"give terrain, fashion, oracle or module:callable, got {self.model!r}",
        )
        _check(
            isinstance(self.model_options, Mapping) and all(isinstance(k, str) for k in self.model_options),
            "model_options",
            f"must be a table of name = value, got {self.model_options!r}",
        )
        _check(_str_tuple(self.statistics), "statistics", f"must be a list of names, got {self.statistics!r}")
        _check(_str_tuple(self.designs), "designs", f"must be a list of design specs, got {self.designs!r}")
        for name in ("budget", "batch_size"):
            _check(
                _int(getattr(self, name)) and getattr(self, name) >= 1,
                name,
                f"must be a positive integer{' (noises per design; per image in evaluate)' if name == 'budget' else ''}, "
                f"got {getattr(self, name)!r}",
            )
        _check(_int(self.seed) and self.seed >= 0, "seed", f"must be a non-negative integer, got {self.seed!r}")
        _check(_int(self.pairs) and self.pairs >= 0, "pairs", f"must be a non-negative integer, got {self.pairs!r}")
        level = self.confidence_level
        _check(
            isinstance(level, (int, float)) and not isinstance(level, bool) and 0 < level < 1,
            "confidence_level",
            f"must be a number in (0, 1), e.g. 0.95, got {level!r}",
        )
        _check(
            self.interval_method in INTERVAL_METHODS,
            "interval_method",
            f"must be one of {', '.join(INTERVAL_METHODS)}, got {self.interval_method!r}",
        )
        _check(isinstance(self.out, str) and self.out != "", "out", f"must be a folder path, got {self.out!r}")
        _check(
            self.device is None or _device_ok(self.device),
            "device",
            f"must be a torch device such as cpu, cuda or cuda:1, got {self.device!r}",
        )
        for name in ("plots", "quiet"):
            _check(isinstance(getattr(self, name), bool), name, f"must be true or false, got {getattr(self, name)!r}")
        self.design_objects()
        if self.command == "evaluate":
            self._check_inverse_problem()
            return
        for spec in self.statistics:
            statistic_from_spec(spec)

    def _check_inverse_problem(self) -> None:
        from uqdiff.estimators.solvers import RECONSTRUCTION_STATISTICS
        from uqdiff.models.problems import PARTICLE_SOLVERS, PROBLEM_MODELS, SOLVERS, TASKS, check_problem

        _check(
            self.model in PROBLEM_MODELS, "model", f"evaluate runs on {' or '.join(PROBLEM_MODELS)}, got {self.model!r}"
        )
        _check(self.solver in SOLVERS, "solver", f"must be one of {', '.join(SOLVERS)}, got {self.solver!r}")
        _check(_str_tuple(self.solvers), "solvers", f"must be a list of solver names, got {self.solvers!r}")
        if self.solvers:
            _check(
                len(self.solvers) >= 2 and len(set(self.solvers)) == len(self.solvers),
                "solvers",
                f"give two or more different solvers to compare over the images, got {list(self.solvers)}",
            )
            named = SOLVERS + PARTICLE_SOLVERS
            for name in self.solvers:
                _check(
                    name in named or ":" in name,
                    "solvers",
                    f"each must be one of {', '.join(named)} or module:factory (measurement -> sampler), got {name!r}",
                )
                if name in named:
                    try:
                        check_problem(self.model, name, self.task)
                    except ValueError as err:
                        raise ConfigError("solvers", str(err)) from None
            _check(
                _int(self.images) and self.images >= 2,
                "images",
                f"comparing solvers over images needs at least 2 (10 or more for a useful interval), got {self.images!r}",
            )
            _check(
                len(self.design_specs()) == 1 or not self.designs,
                "designs",
                f"with several solvers give one design for the common noise, got {list(self.designs)}",
            )
            if self.designs and any(name in PARTICLE_SOLVERS for name in self.solvers):
                from uqdiff.designs import parse_design
                from uqdiff.estimators.engine import check_particle_sets
                from uqdiff.models.problems import RSD_PARTICLES

                try:
                    check_particle_sets(parse_design(self.designs[0]), RSD_PARTICLES)
                except ValueError as err:
                    raise ConfigError("designs", str(err)) from None
        _check(
            self.task in TASKS[self.model],
            "task",
            f"must be one of {', '.join(TASKS[self.model])} for the {self.model} model, got {self.task!r}",
        )
        try:
            check_problem(self.model, self.solver, self.task)
        except ValueError as err:
            raise ConfigError("solver", str(err)) from None
        _check(_int(self.images) and self.images >= 1, "images", f"must be a positive integer, got {self.images!r}")
        _check(
            self.steps is None or (_int(self.steps) and self.steps >= 1),
            "steps",
            f"must be a positive integer (solver steps), got {self.steps!r}",
        )
        sigma = self.sigma_y
        _check(
            isinstance(sigma, (int, float)) and not isinstance(sigma, bool) and 0 <= sigma < float("inf"),
            "sigma_y",
            f"must be a number >= 0 (measurement noise on the [-1, 1] scale), got {sigma!r}",
        )
        bad = [s for s in self.statistics if s not in RECONSTRUCTION_STATISTICS]
        _check(
            not bad,
            "statistics",
            f"evaluate compares with the ground truth: allowed {', '.join(RECONSTRUCTION_STATISTICS)}, "
            f"got {', '.join(bad)}",
        )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], *, source: str = "config") -> RunConfig:
        """Build from plain values (a parsed file merged with flags); field names may use dashes."""
        allowed = {f.name for f in fields(cls)}
        kwargs = {}
        for key, value in values.items():
            name = str(key).replace("-", "_")
            if name == "design":  # the flag --design, written in a file: one design
                if "designs" in values:
                    raise ConfigError("design", f"give design or designs in {source}, not both")
                if not isinstance(value, (str, tuple)):
                    raise ConfigError("design", f"must be one design spec such as 'antithetic', got {value!r}")
                name, value = "designs", (value,) if isinstance(value, str) else value
            if name not in allowed:
                raise ConfigError(name, f"unknown field in {source}; allowed fields: {', '.join(sorted(allowed))}")
            if name in ("statistics", "designs", "solvers") and isinstance(value, str):
                raise ConfigError(
                    name,
                    f"must be a list, got the text {value!r}: write {name} = [{value!r}] in TOML or "
                    f"{name}: [{value}] in YAML" + (" (or design = ... for one design)" if name == "designs" else ""),
                )
            if name in ("statistics", "designs", "solvers") and isinstance(value, list):
                value = tuple(value)
            elif name == "out" and isinstance(value, Path):
                value = str(value)
            kwargs[name] = value
        return cls(**kwargs)

    def design_specs(self) -> tuple[str, ...]:
        """The design specs to run: the given ones, else the command's defaults."""
        return self.designs or DEFAULT_DESIGNS.get(self.command, DEFAULT_DESIGNS["estimate"])

    def design_objects(self) -> list[NoiseDesign]:
        """The designs, parsed; checks the budget against every group size."""
        specs = self.design_specs()
        if self.command == "estimate" and len(specs) != 1:
            raise ConfigError("designs", f"estimate runs one design, got {len(specs)}; use compare for several")
        designs = []
        for spec in specs:
            try:
                designs.append(parse_design(spec))
            except (ValueError, OSError) as err:  # OSError: a coupling:PATH file that is missing or unreadable
                raise ConfigError(
                    "designs", f"{err} (specs look like mc, antithetic, kantithetic:8, rqmc:16, equicorrelated:4:-0.2)"
                ) from None
        names = [d.name for d in designs]
        if len(set(names)) != len(names):
            raise ConfigError("designs", f"each design must appear once, got {', '.join(specs)}")
        step = math.lcm(*(d.group_size for d in designs))
        if self.budget % step or any(self.budget // d.group_size < 2 for d in designs):
            least = max(step, *(2 * d.group_size for d in designs))
            least = -(-least // step) * step
            raise ConfigError(
                "budget",
                f"{self.budget} does not fit the designs' group sizes "
                f"({', '.join(f'{s}: {d.group_size}' for s, d in zip(specs, designs))}); "
                f"use a multiple of {step} that is at least {least}",
            )
        return designs

    def to_dict(self) -> dict[str, Any]:
        """Plain values, ready for JSON or YAML (and loadable again with :func:`load_config_file`)."""
        out = asdict(self)
        out["statistics"], out["designs"] = list(self.statistics), list(self.designs)
        out["solvers"] = list(self.solvers)
        return out


def statistic_from_spec(spec: str, **defaults: Any) -> Statistic:
    """A statistic from ``name`` or ``name:option=value:...``; ``defaults`` (e.g. value_range) come first.

    >>> statistic_from_spec("mean:scale=255")
    PixelMean(name='mean', value_range=(-1.0, 1.0), scale=255.0)
    """
    name, *options = str(spec).split(":")
    cls = STATISTICS.get(name)
    if cls is None:
        raise ConfigError("statistics", f"unknown statistic {name!r}; allowed: {', '.join(cli_statistics())}")
    if issubclass(cls, ReconstructionStatistic):
        raise ConfigError(
            "statistics",
            f"{name!r} needs a reference image, which the command line cannot give; "
            f"allowed: {', '.join(cli_statistics())}",
        )
    kwargs = dict(defaults)
    for option in options:
        key, sep, text = option.partition("=")
        if not sep:
            raise ConfigError("statistics", f"options are written name:key=value, got {spec!r}")
        kwargs[key] = parse_value(text)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError("statistics", f"{spec!r}: {err}") from None


def cli_statistics() -> list[str]:
    """Statistic names the command line accepts (those without a reference image)."""
    return sorted(n for n, c in STATISTICS.items() if not issubclass(c, ReconstructionStatistic))


def design_names() -> list[str]:
    return sorted(DESIGNS)


def parse_value(text: str) -> Any:
    """A flag value as JSON when it parses (numbers, true/false/null, lists), else the text itself.

    >>> parse_value("30"), parse_value("0.5"), parse_value("null"), parse_value("ddim"), parse_value("[1, 2]")
    (30, 0.5, None, 'ddim', [1, 2])
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_assignments(items: list[str], field_name: str) -> dict[str, Any]:
    """``["key=value", ...]`` from repeated flags into a dict of parsed values."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(field_name, f"write KEY=VALUE, got {item!r}")
        if key in out:
            raise ConfigError(field_name, f"{key} is given twice ({out[key]!r}, then {text!r}); give each key once")
        out[key] = parse_value(text)
    return out


def toml_loads(text: str) -> dict[str, Any]:
    """Parse TOML with the standard library's tomllib (Python 3.11+), else the tomli package (3.10)."""
    try:
        import tomllib  # novm: guarded, tomli below on Python 3.10
    except ModuleNotFoundError:  # Python 3.10: pyproject installs tomli there
        import tomli as tomllib
    return tomllib.loads(text)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """The fields of a TOML (.toml) or YAML (.yaml, .yml) config file."""
    path = Path(path)
    if path.suffix.lower() not in CONFIG_SUFFIXES:
        raise ConfigError(
            "config", f"unknown file type {path.suffix or path.name!r}; allowed: {', '.join(CONFIG_SUFFIXES)}"
        )
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError("config", f"cannot read {path}: {err.strerror}") from None
    try:
        if path.suffix.lower() == ".toml":
            values = toml_loads(text)
        else:
            import yaml

            values = yaml.safe_load(text) or {}
    except Exception as err:  # both parsers raise their own error types
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError("config", f"cannot parse {path}: {first}") from None
    if not isinstance(values, dict):
        raise ConfigError("config", f"{path} must hold a table of fields, got {type(values).__name__}")
    return values


def merge(file_values: Mapping[str, Any], flag_values: Mapping[str, Any]) -> dict[str, Any]:
    """Flags over file; ``model_options`` merge key by key."""
    merged = {str(k).replace("-", "_"): v for k, v in file_values.items()}
    for key, value in flag_values.items():
        if key == "model_options" and isinstance(merged.get(key), Mapping):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def _check(ok: bool, field_name: str, message: str) -> None:
    if not ok:
        raise ConfigError(field_name, message)


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _str_tuple(value: Any) -> bool:
    return isinstance(value, tuple) and all(isinstance(v, str) and v for v in value)


def _device_ok(device: Any) -> bool:
    import torch

    try:
        torch.device(device)
    except (RuntimeError, TypeError):
        return False
    return True
