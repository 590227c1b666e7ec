"""Checkpoint and resume: exact state round trips, real SIGKILLs mid-run, and refusals of foreign checkpoints."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from uqdiff import Checkpoint, GaussianCoupling, KAntithetic, SobolRQMC, TargetPrecision, estimate
from uqdiff.estimators.accumulator import GroupAccumulator
from uqdiff.estimators.checkpoint import CheckpointError, load
from uqdiff.estimators.settings import RunSettings
from uqdiff.samplers import GaussianDDIM

ROOT = Path(__file__).resolve().parents[1]
ORACLE = GaussianDDIM(np.linspace(-0.5, 0.5, 6), std=np.linspace(0.3, 0.8, 6), num_steps=8)
STATS = {"m2": lambda x: (x**2).mean(dim=1), "map": lambda x: x}


def test_accumulator_state_round_trip_is_exact():
    rng = np.random.default_rng(0)
    acc = GroupAccumulator()
    for start, n in [(0, 70), (70, 200), (300, 5), (270, 30)]:  # whole blocks, parked rows and a gap
        acc.add(start, rng.standard_normal((n, 2)), rng.random((n, 2)))
    back = GroupAccumulator.from_state(acc.state())
    assert back.count == acc.count == 305 and back.shape == (2,)
    for a, b in [(back.moments(), acc.moments())]:
        assert a.count == b.count
        for field in ("mean", "m2", "within"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    tail = rng.standard_normal((100, 2)), rng.random((100, 2))
    acc.add(305, *tail)
    back.add(305, *tail)
    np.testing.assert_array_equal(back.moments().m2, acc.moments().m2)
    with pytest.raises(ValueError, match="already counted"):
        back.add(300, np.zeros((1, 2)), np.zeros((1, 2)))
    assert GroupAccumulator.from_state(GroupAccumulator().state()).shape is None


@pytest.mark.parametrize("design", ["mc", KAntithetic(4), SobolRQMC(8)], ids=str)
def test_resume_after_failure_gives_the_uninterrupted_result(tmp_path, design):
    """A run that fails mid-way leaves a checkpoint; resuming it ends bit-identical, counting no group twice."""
    kw = dict(budget=1024, design=design, seed=7, run=RunSettings(batch_size=24, dtype=torch.float64))
    whole = estimate(ORACLE, STATS, **kw)

    class Failing:
        noise_shape = ORACLE.noise_shape
        calls = 0

        def __call__(self, z):
            self.calls += len(z)
            if self.calls > 600:
                raise OSError("device lost")
            return ORACLE(z)

    path = tmp_path / "run.ckpt"
    with pytest.raises(Exception, match=r"device lost on groups \d+\.\.\d+, seed 7") as info:
        estimate(Failing(), STATS, **{**kw, "run": kw["run"].replace(checkpoint=Checkpoint(path, every=5))})
    assert "Checkpoint(path, resume=True)" in "".join(getattr(info.value, "__notes__", []))
    meta, stages = load(path)
    k = whole.config["group_size"]
    assert 0 < stages["main"].n_done * k <= 600 and stages["main"].done == [(0, stages["main"].n_done)]
    evaluations = []
    resumed = estimate(
        ORACLE,
        STATS,
        **{k: v for k, v in kw.items() if k != "run"},
        run=kw["run"].replace(
            checkpoint=Checkpoint(path, resume=True), batch_size=40, callback=lambda n, accs: evaluations.append(n)
        ),
    )
    assert resumed.to_dict()["results"] == whole.to_dict()["results"] and resumed.budget == 1024
    assert evaluations[0] > stages["main"].n_done * k and evaluations[-1] == 1024
    again = estimate(
        ORACLE,
        STATS,
        **{k: v for k, v in kw.items() if k != "run"},
        run=kw["run"].replace(checkpoint=Checkpoint(path, resume=True), callback=lambda n, a: evaluations.append(-1)),
    )
    assert again.to_json() == whole.to_json() and -1 not in evaluations  # finished: no model call


SCRIPT = """
import sys, time
import numpy as np, torch
from uqdiff import Checkpoint, RunSettings, TargetPrecision, estimate
from uqdiff.samplers import GaussianDDIM

class Slow(GaussianDDIM):
    def __call__(self, z):
        time.sleep(0.01)
        return super().__call__(z)

g = Slow(np.linspace(-0.5, 0.5, 6), std=np.linspace(0.3, 0.8, 6), num_steps=8)
stats = {"m2": lambda x: (x**2).mean(dim=1), "map": lambda x: x}
kw = dict(design="antithetic", seed=11, run=RunSettings(batch_size=8, dtype=torch.float64,
          checkpoint=Checkpoint(sys.argv[1], resume=True, every=int(sys.argv[2]))))
if sys.argv[3] == "fixed":
    r = estimate(g, stats, budget=1200, **kw)
else:
    r = estimate(g, stats, stopping=TargetPrecision(halfwidth=0.01, max_budget=4000), **kw)
print(r.to_json())
"""


def _uninterrupted(mode):
    kw = dict(design="antithetic", seed=11, run=RunSettings(batch_size=8, dtype=torch.float64))
    if mode == "fixed":
        return estimate(ORACLE, STATS, budget=1200, **kw)
    return estimate(ORACLE, STATS, stopping=TargetPrecision(halfwidth=0.01, max_budget=4000), **kw)


@pytest.mark.parametrize(
    "mode, kills",
    [
        pytest.param("fixed", (0.3, 0.02, 0.6), marks=pytest.mark.slow),
        ("sequential", (0.3,)),  # one kill in the default suite; the slow case kills three times
    ],
)
def test_sigkill_mid_run_then_resume_matches_uninterrupted_run(tmp_path, mode, kills):
    """Real subprocesses killed with SIGKILL at several moments, including mid-write; the last run finishes."""
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    path = tmp_path / "state.ckpt"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    progress = []
    for i, delay in enumerate(kills):
        proc = subprocess.Popen(
            [sys.executable, str(script), str(path), str(1 + i % 2), mode],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
        )
        deadline = time.monotonic() + 60
        before = progress[-1] if progress else 0
        while time.monotonic() < deadline and proc.poll() is None:  # wait for new progress, then kill
            if path.exists() and sum(s.n_done for s in load(path)[1].values()) > before:
                break
            time.sleep(0.02)
        time.sleep(delay)
        assert proc.poll() is None, f"run ended before it could be killed: {proc.communicate()[1][-500:]}"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        meta, stages = load(path)  # never torn: always the previous or the new state
        progress.append(sum(s.n_done for s in stages.values()))
    assert progress == sorted(progress) and progress[0] > 0
    final = subprocess.run(
        [sys.executable, str(script), str(path), "3", mode],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert final.returncode == 0, final.stderr[-2000:]
    got = json.loads(final.stdout.strip().splitlines()[-1])
    assert got == json.loads(_uninterrupted(mode).to_json())


def test_checkpoint_of_another_run_is_refused(tmp_path):
    path = tmp_path / "a.ckpt"
    kw = dict(budget=256, design="antithetic", seed=1, run=RunSettings(checkpoint=path))
    estimate(ORACLE, STATS, **kw)
    with pytest.raises(CheckpointError, match=r"exists; pass Checkpoint\(path, resume=True\)"):
        estimate(ORACLE, STATS, **kw)
    kw["run"] = RunSettings(checkpoint=Checkpoint(path, resume=True))
    changes = [
        (dict(budget=512), r"strategy: checkpoint 'FixedBudget\(256\)', this run 'FixedBudget\(512\)'"),
        (dict(seed=2), r"seed: checkpoint \[1\], this run \[2\]"),
        (dict(design="mc"), r"design: checkpoint 'antithetic', this run 'mc'"),
        (dict(run=kw["run"].replace(dtype=torch.float64)), r"dtype"),
        (dict(confidence_level=0.9), r"confidence_level"),
    ]
    for change, match in changes:
        with pytest.raises(CheckpointError, match=match):
            estimate(ORACLE, STATS, **{**kw, **change})
    with pytest.raises(CheckpointError, match=r"statistics: checkpoint \['m2', 'map'\], this run \['m2'\]"):
        estimate(ORACLE, {"m2": STATS["m2"]}, **kw)
    # same design name and group size, other coupling matrix: only the design fingerprint tells them apart
    a = GaussianCoupling([[1.0, 0.0], [0.6, 0.8]])
    b = GaussianCoupling([[1.0, 0.0], [0.8, 0.6]])
    assert a.name == b.name
    estimate(ORACLE, STATS, **{**kw, "design": a, "run": RunSettings(checkpoint=tmp_path / "c.ckpt")})
    with pytest.raises(CheckpointError, match="design_fingerprint"):
        resume = RunSettings(checkpoint=Checkpoint(tmp_path / "c.ckpt", resume=True))
        estimate(ORACLE, STATS, **{**kw, "design": b, "run": resume})


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_damaged_checkpoint_is_refused(tmp_path, damage):
    path = tmp_path / "a.ckpt"
    kw = dict(budget=256, seed=1, run=RunSettings(checkpoint=path))
    estimate(ORACLE, STATS, **kw)
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":  # a byte of an array's values (zip header padding may be ignored by readers)
        data[data.index(b"\x93NUMPY", len(data) // 3) + 130] ^= 0xFF
    else:
        data = bytearray(b"not a checkpoint")
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="damaged"):
        estimate(ORACLE, STATS, **{**kw, "run": RunSettings(checkpoint=Checkpoint(path, resume=True))})


def test_compare_keeps_one_checkpoint_per_design(tmp_path):
    from uqdiff import compare
    from uqdiff.samplers import LinearGenerator

    g = LinearGenerator(np.array([0.5]), np.array([[0.3, 0.1]]))
    stat = {"sq": lambda x: x[:, 0] ** 2}
    kw = dict(budget=64, designs=["mc", "antithetic"], seed=2, run=RunSettings(batch_size=16))
    first = compare(g, stat, **{**kw, "run": kw["run"].replace(checkpoint=tmp_path / "run.ckpt")})
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and all(f.startswith("run.") and f.endswith(".ckpt") for f in files)
    again = compare(
        g, stat, **{**kw, "run": kw["run"].replace(checkpoint=Checkpoint(tmp_path / "run.ckpt", resume=True))}
    )  # finished: no model calls
    plain = compare(g, stat, **kw)
    for d in ("mc", "antithetic"):
        assert again.estimates[d]["sq"] == first.estimates[d]["sq"] == plain.estimates[d]["sq"]


def test_checkpoint_path_is_checked_before_any_model_call(tmp_path):
    calls = []
    g = lambda z: calls.append(len(z)) or ORACLE(z)
    with pytest.raises(FileNotFoundError, match="checkpoint folder .* does not exist"):
        estimate(
            g,
            STATS,
            budget=64,
            noise_shape=ORACLE.noise_shape,
            run=RunSettings(checkpoint=tmp_path / "missing" / "a.ckpt"),
        )
    with pytest.raises(ValueError, match="is a folder"):
        estimate(g, STATS, budget=64, noise_shape=ORACLE.noise_shape, run=RunSettings(checkpoint=tmp_path))
    with pytest.raises(ValueError, match="every must be a positive int"):
        Checkpoint(tmp_path / "a.ckpt", every=0)
    assert calls == []


def test_a_stray_temporary_from_a_killed_save_is_removed(tmp_path):
    path = tmp_path / "a.ckpt"
    stray = tmp_path / "a.ckpt.x1y2.tmp"
    stray.write_bytes(b"half a checkpoint")
    other = tmp_path / "b.ckpt.x1y2.tmp"
    other.write_bytes(b"another run's")
    estimate(ORACLE, STATS, budget=64, seed=1, run=RunSettings(checkpoint=path))
    assert not stray.exists() and other.exists() and path.exists()
