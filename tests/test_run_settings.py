"""Run settings said once: RunSettings, the 0.2 spellings' deprecation path, and every strategy on the engine."""

import numpy as np
import pytest
import torch

from uqdiff import CallbackError, Checkpoint, RunSettings, SamplerLike, estimate
from uqdiff.designs import DCTFeatures
from uqdiff.estimators import ControlVariates, estimate_two_fidelity
from uqdiff.estimators.checkpoint import load
from uqdiff.samplers import LinearGenerator

G = LinearGenerator([0.2, -0.1], [[1.0, 0.3, 0.0], [0.2, 0.5, 0.4]])
STAT = {"sq": lambda x: (x**2).sum(dim=1)}  # truth: 0.05 + 1.09 + 0.45 = 1.59


def test_the_old_keywords_still_work_for_one_release_with_the_new_spelling_in_the_warning():
    new = estimate(G, STAT, budget=256, seed=1, run=RunSettings(batch_size=32, dtype=torch.float64))
    with pytest.warns(DeprecationWarning, match=r"batch_size=, dtype= moved into run=RunSettings\(batch_size=\.\.\."):
        old = estimate(G, STAT, budget=256, seed=1, batch_size=32, dtype=torch.float64)
    assert old.to_json() == new.to_json()
    with pytest.warns(DeprecationWarning, match="renamed generator= -> sampler="):
        renamed = estimate(
            generator=G, statistics=STAT, budget=256, seed=1, run=RunSettings(batch_size=32, dtype=torch.float64)
        )
    assert renamed.to_json() == new.to_json()
    with pytest.raises(TypeError, match="put them all in run=RunSettings"):
        estimate(G, STAT, budget=256, batch_size=32, run=RunSettings())


def test_bad_settings_are_refused_where_they_are_made_with_the_fix():
    with pytest.raises(TypeError, match=r"pass run=RunSettings\(\*\*\{'batch_size': 8\}\)"):
        estimate(G, STAT, budget=64, run={"batch_size": 8})
    for bad, error, match in [
        (dict(batch_size=0), ValueError, "batch_size must be a positive int"),
        (dict(dtype=torch.int32), TypeError, "floating-point"),
        (dict(device="gpu-please"), ValueError, "device must be a torch device"),
        (dict(progress=1), TypeError, "progress must be True or False"),
        (dict(callback=3), TypeError, "callback must be callable"),
        (dict(executor="ray"), TypeError, "executor must be a RayExecutor"),
    ]:
        with pytest.raises(error, match=match):
            RunSettings(**bad)
    assert RunSettings(checkpoint="run.ckpt").checkpoint == Checkpoint("run.ckpt")
    assert RunSettings().for_part("mc") is not None and RunSettings().for_part("mc").checkpoint is None


def test_a_sampler_is_anything_callable():
    assert isinstance(G, SamplerLike) and isinstance(lambda z: z, SamplerLike)
    assert not isinstance(3, SamplerLike)


def _stop_after(noises):
    def stop(n, accs):
        if n >= noises:
            raise RuntimeError("stopped by the test")

    return stop


def test_control_variates_resume_from_a_checkpoint_to_the_uninterrupted_result(tmp_path):
    """0.2 refused control variates with a checkpoint; on the engine the pilot is redrawn and the main stage resumes."""
    g = LinearGenerator(np.zeros(16))
    stat = {"m2": lambda x: x.mean(dim=1) ** 2}
    kw = dict(budget=800, control_variates=ControlVariates(DCTFeatures(2)), seed=5)
    whole = estimate(g, stat, **kw, run=RunSettings(batch_size=40))
    path = tmp_path / "cv.ckpt"
    with pytest.raises(CallbackError):
        estimate(g, stat, **kw, run=RunSettings(batch_size=40, checkpoint=path, callback=_stop_after(400)))
    assert 0 < load(path)[1]["main"].n_done < 800 - 160
    resumed = estimate(g, stat, **kw, run=RunSettings(batch_size=40, checkpoint=Checkpoint(path, resume=True)))
    assert resumed.to_json() == whole.to_json()


def test_two_fidelity_resumes_from_checkpoints_and_shows_progress(tmp_path, capsys):
    """0.2's two-fidelity runner had no checkpoint and no progress bar; now its stages run on the engine."""
    full = LinearGenerator([0.5], [[1.0, 0.3]])
    cheap = LinearGenerator([0.4], [[1.0, 0.0]])
    x = {"x": lambda y: y[:, 0] ** 2}
    kw = dict(budget=400, cost_ratio=0.1, seed=2)
    whole = estimate_two_fidelity(full, cheap, x, **kw, run=RunSettings(batch_size=32))
    path = tmp_path / "tf.ckpt"
    with pytest.raises(CallbackError):
        estimate_two_fidelity(
            full, cheap, x, **kw, run=RunSettings(batch_size=32, checkpoint=path, callback=_stop_after(600))
        )
    resumed = estimate_two_fidelity(
        full, cheap, x, **kw, run=RunSettings(batch_size=32, checkpoint=Checkpoint(path, resume=True), progress=True)
    )
    assert resumed.to_json() == whole.to_json() and whole["x"].low < 1.34 < whole["x"].high  # 0.25 + 1.09
    with pytest.raises(TypeError, match="needs cost_ratio"):
        estimate_two_fidelity(full, cheap, x, budget=400, run=RunSettings(checkpoint=tmp_path / "other.ckpt"))
