"""Checkpoints of a run: accumulators, finished groups and the run's fingerprint, in one npz file.

A checkpoint is a single ``.npz`` archive (no pickle: it is read with
``allow_pickle=False``) holding each accumulator's exact arrays plus one JSON
document (stored as bytes) with the format version, the uqdiff version, the
run's configuration and the finished group ranges of each stage. It is
written to a temporary file in the same folder, flushed to disk and renamed
over the old one, so a kill at any moment leaves either the previous or the
new checkpoint, never a torn one. A SHA-256 digest of every array, stored in
the JSON, catches files damaged after the fact.

The configuration includes a *design fingerprint*: the SHA-256 of the noise
the design draws for groups 0 and 1 under the run's seed (CPU, float64). Any
change to the design's parameters (coupling matrix, Sobol' scrambling,
group size) or to the seed changes that noise, so a checkpoint can never be
continued with a different design, even one with the same name.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from uqdiff.designs import NoiseDesign
from uqdiff.estimators.accumulator import GroupAccumulator

FORMAT = "uqdiff-checkpoint"
FORMAT_VERSION = 3  # 2: third moment of the group means (uqdiff 0.2); 3: fourth moment and the sampler fingerprint


class CheckpointError(ValueError):
    """A checkpoint that is unreadable, damaged or written for a different run."""


@dataclass(frozen=True)
class Checkpoint:
    """Where a run keeps its state, how often it saves it, and whether to continue from it.

    ``every`` counts batches between saves (a run also saves at its end and when a batch
    fails). ``resume=True`` continues the checkpoint at ``path`` and gives exactly the
    uninterrupted result; without it an existing file is refused, so a run never
    overwrites another one's state by accident. The folder is checked when the object
    is made, so a bad path fails before the first model call, not at the first save.

    >>> Checkpoint("run.ckpt").for_design("antithetic").path.name
    'run.794f9fb8.ckpt'
    """

    path: Path
    resume: bool = False
    every: int = 10

    def __post_init__(self) -> None:
        if not isinstance(self.path, (str, os.PathLike)):
            raise TypeError(f"checkpoint path must be a str or path, got {type(self.path).__name__}")
        object.__setattr__(self, "path", Path(self.path))
        if not isinstance(self.resume, bool):
            raise TypeError(f"resume must be True or False, got {self.resume!r}")
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1:
            raise ValueError(f"checkpoint every must be a positive int (batches), got {self.every!r}")
        if self.path.is_dir():
            raise ValueError(f"checkpoint path {str(self.path)!r} is a folder; give a file path such as run.ckpt")
        folder = self.path.parent
        if not folder.is_dir():
            raise FileNotFoundError(f"checkpoint folder {str(folder)!r} does not exist; create it first")
        if not os.access(folder, os.W_OK):
            raise PermissionError(f"checkpoint folder {str(folder)!r} is not writable")

    @classmethod
    def of(cls, value: Checkpoint | str | os.PathLike | None) -> Checkpoint | None:
        """A Checkpoint from what a task function accepts: None, a path (resume=False) or a Checkpoint."""
        if value is None or isinstance(value, Checkpoint):
            return value
        if isinstance(value, (str, os.PathLike)):
            return cls(value)
        raise TypeError(f"checkpoint must be a path or a Checkpoint, got {type(value).__name__}")

    def for_design(self, design_name: str) -> Checkpoint:
        """This checkpoint for one design of several: ``run.ckpt`` -> ``run.<crc32 of the name>.ckpt``."""
        tag = f"{zlib.crc32(design_name.encode()):08x}"
        return dataclasses.replace(self, path=self.path.with_name(f"{self.path.stem}.{tag}{self.path.suffix}"))


def design_fingerprint(design: NoiseDesign, dim: int, seed: Any) -> str:
    """SHA-256 of the noise of groups 0 and 1 (CPU, float64): changes with any design parameter or the seed."""
    noise = design.groups([0, 1], dim, seed=seed, device="cpu", dtype=torch.float64)
    return hashlib.sha256(noise.numpy().tobytes()).hexdigest()


@dataclass
class Stage:
    """The accumulators of one stage of a run and the group ranges [lo, hi) already in them."""

    accumulators: dict[str, GroupAccumulator]
    done: list[tuple[int, int]] = field(default_factory=list)

    @classmethod
    def empty(cls, names: list[str]) -> Stage:
        return cls({name: GroupAccumulator() for name in names})

    def mark_done(self, lo: int, hi: int) -> None:
        """Record groups [lo, hi) as counted, keeping the ranges sorted and merged."""
        ranges = sorted([*self.done, (lo, hi)])
        merged = [list(ranges[0])]
        for a, b in ranges[1:]:
            if a < merged[-1][1]:
                raise ValueError(f"groups {a}..{b - 1} overlap groups already counted")
            if a == merged[-1][1]:
                merged[-1][1] = b
            else:
                merged.append([a, b])
        self.done = [(a, b) for a, b in merged]

    def missing(self, lo: int, hi: int) -> list[tuple[int, int]]:
        """The sub-ranges of [lo, hi) not yet counted."""
        out, at = [], lo
        for a, b in self.done:
            if a > at:
                out.append((at, min(a, hi)))
            at = max(at, b)
            if at >= hi:
                break
        if at < hi:
            out.append((at, hi))
        return [(a, b) for a, b in out if a < b]

    @property
    def n_done(self) -> int:
        return sum(b - a for a, b in self.done)


def save(
    path: str | os.PathLike,
    config: Mapping[str, Any],
    stages: Mapping[str, Stage],
    version: str,
    sampler_output: Mapping[str, Any] | None = None,
) -> None:
    """Write the checkpoint atomically: temporary file in the same folder, fsync, rename.

    ``sampler_output`` is the sampler's fingerprint (see :func:`sampler_fingerprint`).
    """
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    stage_meta = {}
    for stage_name, stage in stages.items():
        names = list(stage.accumulators)
        for i, name in enumerate(names):
            for key, value in stage.accumulators[name].state().items():
                arrays[f"{stage_name}/{i}/{key}"] = value
        stage_meta[stage_name] = {"statistics": names, "done": [list(r) for r in stage.done]}
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "uqdiff_version": version,
        "config": dict(config),
        "stages": stage_meta,
        "sampler_output": None if sampler_output is None else dict(sampler_output),
        "digest": _digest(arrays),
    }
    arrays["meta"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stray_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete ``<name>.*.tmp`` files :func:`save` left beside ``path`` when a run was killed mid-save.

    Such a file is never a valid checkpoint (the rename that would make it one did not
    happen), so removing it loses nothing. Returns the files removed.
    """
    path = Path(path)
    stray = sorted(path.parent.glob(f"{path.name}.*.tmp")) if path.parent.is_dir() else []
    for tmp in stray:
        tmp.unlink(missing_ok=True)
    return stray


def load(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Stage]]:
    """Read and verify a checkpoint: (its JSON document, its stages). Raises CheckpointError."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        meta = json.loads(arrays.pop("meta").tobytes().decode())
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise CheckpointError(f"checkpoint {str(path)!r} is damaged or not a uqdiff checkpoint ({exc})") from exc
    if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {str(path)!r} has format {meta.get('format')!r} version {meta.get('format_version')!r}; "
            f"expected {FORMAT!r} version {FORMAT_VERSION}"
        )
    if meta.get("digest") != _digest(arrays):
        raise CheckpointError(f"checkpoint {str(path)!r} is damaged: its arrays do not match their SHA-256 digest")
    stages = {}
    for stage_name, info in meta["stages"].items():
        accs = {}
        for i, name in enumerate(info["statistics"]):
            prefix = f"{stage_name}/{i}/"
            accs[name] = GroupAccumulator.from_state(
                {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
            )
        stages[stage_name] = Stage(accs, [tuple(r) for r in info["done"]])
    return meta, stages


def check_matches(path: str | os.PathLike, meta: Mapping[str, Any], config: Mapping[str, Any], version: str) -> None:
    """Raise CheckpointError naming every field where the checkpoint's run differs from this one."""
    if meta["uqdiff_version"] != version:
        raise CheckpointError(
            f"checkpoint {str(path)!r} was written by uqdiff {meta['uqdiff_version']}, this is {version}; "
            "results could differ between versions: finish it with that version or start a new run"
        )
    saved = meta["config"]
    diffs = [
        f"{key}: checkpoint {saved.get(key)!r}, this run {config.get(key)!r}"
        for key in sorted(set(saved) | set(config))
        if saved.get(key) != config.get(key)
    ]
    if diffs:
        raise CheckpointError(
            f"checkpoint {str(path)!r} belongs to a different run ({'; '.join(diffs)}); "
            "pass the same options to continue it, or another checkpoint path to start afresh"
        )


#: Elements of the probe output a checkpoint keeps (evenly spaced): enough to tell two models apart.
FINGERPRINT_VALUES = 1024


def sampler_fingerprint(output: np.ndarray, tolerance: float) -> dict[str, Any]:
    """What a checkpoint keeps of the sampler's output on one fixed noise: shape and up to 1024 values."""
    flat = np.asarray(output, dtype=np.float64).ravel()
    index = np.unique(np.linspace(0, flat.size - 1, min(flat.size, FINGERPRINT_VALUES)).round().astype(int))
    return {"shape": list(output.shape), "values": flat[index].tolist(), "tolerance": float(tolerance)}


def check_sampler(path: str | os.PathLike, saved: Mapping[str, Any], now: Mapping[str, Any], where: str) -> None:
    """Refuse to resume with a sampler that does not reproduce the checkpoint's fingerprint."""
    advice = (
        "resume with the sampler (model, weights, settings) that wrote the checkpoint, or give another checkpoint "
        "path to start afresh"
    )
    if list(saved["shape"]) != list(now["shape"]):
        raise CheckpointError(
            f"checkpoint {str(path)!r} was written with another sampler: its output for {where} had shape "
            f"{tuple(saved['shape'])}, this sampler's has {tuple(now['shape'])}; {advice}"
        )
    a, b = np.asarray(saved["values"]), np.asarray(now["values"])
    diff, scale = float(np.abs(a - b).max(initial=0.0)), float(np.abs(a).max(initial=0.0))
    if diff > saved["tolerance"] * max(scale, 1e-30):
        raise CheckpointError(
            f"checkpoint {str(path)!r} was written with another sampler: its output for {where} differs from this "
            f"sampler's by up to {diff:.4g} (tolerance {saved['tolerance']:g} x max |output| {scale:.4g}), so the "
            f"finished groups and the new ones would mix two models; {advice}"
        )


def _digest(arrays: Mapping[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(f"{key}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()
