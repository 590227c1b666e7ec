"""Cases that used to give a wrong answer without a word (issue 23): each is now refused, named."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest
import torch

import uqdiff
from uqdiff.estimators.settings import RunSettings


class Switching:
    """tanh(z + 0.3) whose output turns into something else from its ``after``-th call on."""

    noise_shape = (1, 4, 4)

    def __init__(self, late, after=2):
        self.calls, self.late, self.after = 0, late, after

    def __call__(self, z):
        self.calls += 1
        x = torch.tanh(z + 0.3)
        return self.late(x) if self.calls > self.after else x


def mean(x):
    return torch.as_tensor(x).reshape(len(x), -1).float().mean(dim=1)


def test_a_batch_whose_dtype_changes_is_refused_naming_both():
    g = Switching(lambda x: (x * 10).round().long(), after=3)  # batch 3 (+ repeat check) turns int64
    with pytest.raises(
        ValueError, match=r"generator output dtype changed from float32 to int64 .*group 32.*\.float\(\)"
    ):
        uqdiff.estimate(g, mean, budget=128, seed=0, run=RunSettings(batch_size=16))


@pytest.mark.parametrize(
    "late, error, match",
    [
        (lambda x: torch.complex(x, x), TypeError, r"complex values \(torch.complex64\).*imaginary part"),
        (lambda x: np.array([object()] * len(x), dtype=object), TypeError, "dtype object.*not numbers.*stack"),
    ],
    ids=["complex", "object"],
)
def test_complex_and_object_outputs_are_refused_at_once(late, error, match):
    g = Switching(late, after=0)
    with pytest.raises(error, match=match):
        uqdiff.estimate(g, mean, budget=32, seed=0, run=RunSettings(batch_size=16))
    assert g.calls == 1


def test_integer_images_from_the_first_batch_on_are_fine():
    g = Switching(lambda x: ((x + 1) * 127.5).round().to(torch.uint8), after=0)
    r = uqdiff.estimate(g, mean, budget=64, seed=0, run=RunSettings(batch_size=16))
    assert 0 < r["mean"].estimate < 255


def test_a_noise_shape_other_than_the_declared_one_is_refused_before_any_call():
    g = Switching(lambda x: x)
    with pytest.raises(
        ValueError, match=r"noise_shape=\(1, 8, 8\) was given, but the generator declares .*\(1, 4, 4\)"
    ):
        uqdiff.estimate(g, mean, budget=32, noise_shape=(1, 8, 8), seed=0)
    assert g.calls == 0
    assert uqdiff.estimate(g, mean, budget=32, noise_shape=(1, 4, 4), seed=0)["mean"].n_groups == 32


class Interrupted:
    """``fn`` that raises after ``limit`` noises: a run cut short mid-way."""

    noise_shape = (1, 4, 4)

    def __init__(self, fn, limit):
        self.fn, self.limit, self.seen = fn, limit, 0

    def __call__(self, z):
        self.seen += len(z)
        if self.seen > self.limit:
            raise OSError("machine lost")
        return self.fn(z)


def test_resuming_with_another_sampler_of_the_same_shape_is_refused(tmp_path):
    """Interrupted under tanh(z + 0.3), resumed with tanh(2z): 0.2 mixed them into 0.033 without a word."""
    path = tmp_path / "run.ckpt"
    first = lambda z: torch.tanh(z + 0.3)
    with pytest.raises(Exception, match="machine lost"):
        uqdiff.estimate(
            Interrupted(first, 200), mean, budget=512, seed=0, run=RunSettings(batch_size=32, checkpoint=path)
        )
    with pytest.raises(
        uqdiff.CheckpointError, match=r"another sampler: its output for group 0's first noise .*differs"
    ):
        uqdiff.estimate(
            Interrupted(lambda z: torch.tanh(2 * z), 10**9),
            mean,
            budget=512,
            seed=0,
            run=RunSettings(batch_size=32, checkpoint=uqdiff.Checkpoint(path, resume=True)),
        )
    with pytest.raises(uqdiff.CheckpointError, match=r"had shape \(1, 1, 4, 4\), this sampler's has \(1, 2, 4, 4\)"):
        uqdiff.estimate(
            Interrupted(lambda z: torch.tanh(z).repeat(1, 2, 1, 1), 10**9),
            mean,
            budget=512,
            seed=0,
            run=RunSettings(batch_size=32, checkpoint=uqdiff.Checkpoint(path, resume=True)),
        )
    # the same sampler, another batch size: resumes and ends on the uninterrupted result
    resumed = uqdiff.estimate(
        Interrupted(first, 10**9),
        mean,
        budget=512,
        seed=0,
        run=RunSettings(batch_size=16, checkpoint=uqdiff.Checkpoint(path, resume=True)),
    )
    whole = uqdiff.estimate(Interrupted(first, 10**9), mean, budget=512, seed=0, run=RunSettings(batch_size=32))
    assert resumed["mean"].estimate == pytest.approx(whole["mean"].estimate, rel=1e-6)


def test_a_finished_checkpoint_needs_no_model_call(tmp_path):
    path = tmp_path / "run.ckpt"
    g = Interrupted(lambda z: torch.tanh(z + 0.3), 10**9)
    uqdiff.estimate(g, mean, budget=64, seed=0, run=RunSettings(checkpoint=path))
    again = Interrupted(lambda z: torch.tanh(2 * z), 0)  # any call would raise
    assert uqdiff.estimate(
        again, mean, budget=64, seed=0, run=RunSettings(checkpoint=uqdiff.Checkpoint(path, resume=True))
    )["mean"]


def test_a_statistic_that_changes_the_images_in_place_is_named_not_the_sampler():
    def clamping(x):
        return x.clamp_(0, 0.1).reshape(len(x), -1).mean(dim=1)

    g = Switching(lambda x: x)
    with pytest.raises(ValueError, match=r"statistic 'clamping' changed the images in place.*x.clone\(\)"):
        uqdiff.estimate(g, {"clamping": clamping}, budget=32, seed=0)


def test_a_callback_that_raises_is_named_as_the_callback():
    def callback(n, accumulators):
        return 1 / 0

    with pytest.raises(
        uqdiff.CallbackError, match=r"callback raised ZeroDivisionError: division by zero after 16 noises"
    ):
        uqdiff.estimate(
            Switching(lambda x: x), mean, budget=32, seed=0, run=RunSettings(batch_size=16, callback=callback)
        )


def test_an_output_shape_that_depends_on_the_batch_is_named_so():
    class BatchShaped:
        noise_shape = (4,)

        def __call__(self, z):
            return z[:, : 2 if len(z) > 1 else 3]

    with pytest.raises(ValueError, match=r"output shape depends on the batch: \(2,\) .* batch of 16, \(3,\) .* alone"):
        uqdiff.estimate(BatchShaped(), {"s": lambda x: x[:, 0]}, budget=32, seed=0, run=RunSettings(batch_size=16))


def test_two_fidelity_with_a_cheap_model_of_another_output_shape_names_both_shapes():
    from uqdiff.estimators import estimate_two_fidelity

    class Cropped:
        noise_shape = (1, 4, 4)

        def __init__(self, width):
            self.width = width

        def __call__(self, z):
            return torch.tanh(z)[..., : self.width]

    with pytest.raises(
        ValueError, match=r"cheap_sampler returns outputs of shape \(1, 4, 2\) per image, sampler \(1, 4, 4\)"
    ):
        estimate_two_fidelity(Cropped(4), Cropped(2), {"px": lambda x: x[:, 0, 0, 3]}, budget=200, cost_ratio=0.2)


def test_a_statistic_that_raises_keeps_its_type_and_is_named_with_the_output_shape():
    with pytest.raises(IndexError) as info:
        uqdiff.estimate(
            Switching(lambda x: x), {"px": lambda x: x[:, 0, 0, 9]}, budget=32, seed=0, run=RunSettings(batch_size=16)
        )
    if sys.version_info >= (3, 11):
        assert re.search(
            r"statistic 'px' on a batch of generator outputs of shape \(16, 1, 4, 4\)", str(info.value.__notes__)
        )


class Slow:
    """tanh at ``seconds`` per call: a model whose pace the first batch shows."""

    noise_shape = (4,)

    def __init__(self, seconds):
        self.seconds, self.calls = seconds, 0

    def __call__(self, z):
        import time

        self.calls += 1
        time.sleep(self.seconds)
        return torch.tanh(z)


def test_a_budget_beyond_the_stream_is_refused_before_any_call():
    g = Slow(0)
    for budget in (10**30, 2**40):
        with pytest.raises(ValueError, match=r"at most 4294967295 groups.*TargetPrecision"):
            uqdiff.estimate(g, {"m": lambda x: x.mean(dim=1)}, budget=budget, seed=0)
    assert g.calls == 0


def test_a_budget_that_cannot_finish_is_refused_after_the_first_batch():
    g = Slow(0.5)  # 8 ms a noise at batch 64: 2**32 noises take over a year
    with pytest.raises(ValueError, match=r"cannot finish: at the first batch's pace .* about [\d.]+ years"):
        uqdiff.estimate(g, {"m": lambda x: x.mean(dim=1)}, budget=2**32 - 2, seed=0)
    assert g.calls == 2  # the first batch and the repeat check


def test_a_long_budget_without_a_checkpoint_is_warned_with_its_projected_time():
    g = Slow(0.02)
    calls = []

    def stop(n, accumulators):
        calls.append(n)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the warning comes at the first batch: no need to wait for the rest

    with pytest.warns(UserWarning, match=r"would take about [\d.]+ (hours|days).*no checkpoint"):
        with pytest.raises(KeyboardInterrupt):
            uqdiff.estimate(g, {"m": lambda x: x.mean(dim=1)}, budget=2**24, seed=0, run=RunSettings(callback=stop))
