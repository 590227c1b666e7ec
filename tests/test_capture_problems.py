"""Problems found running public inverse-solver code under capture: batch-1-only solvers, the keyword forms
of torch's Gaussian functions, and what the repeat check says about batch dependence."""

import numpy as np
import pytest
import torch

from uqdiff import estimate
from uqdiff.designs import IID, Antithetic
from uqdiff.estimators.settings import RunSettings
from uqdiff.samplers import Captured, CaptureError, RepeatCheckError, check_repeatable
from uqdiff.samplers.base import Sampler
from uqdiff.samplers.capture import CapturedCallError
from uqdiff.samplers.repeat import check_first_batch

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


# -- 1. solvers that only run at batch 1 ----------------------------------------------------------------


def dps_official_style(n):
    """As the official DPS code: ``if t != 0`` on a batch tensor of time steps only works at batch 1."""
    x = torch.randn(n, 3)
    for step in (2, 1, 0):
        t = torch.full((n,), step)
        if t != 0:  # RuntimeError at batch > 1: a boolean of several values is ambiguous
            x = 0.5 * x + torch.randn_like(x)
    return x


def test_a_batch_one_solver_traces_and_runs_at_batch_one():
    g = Captured(dps_official_style)
    assert g.noise_shape == (3,) and g.noise_size == 9  # traced at batch 1, where the solver runs
    r = estimate(g, lambda x: x[:, 0], budget=8, design="antithetic", seed=0, run=RunSettings(batch_size=1))
    assert r["statistic"].width == 0.0  # linear in its noise: antithetic pairs cancel, every draw designed


def test_max_batch_runs_larger_batches_in_chunks_with_the_same_noise():
    g = Captured(dps_official_style, max_batch=1)
    assert g.max_batch == 1
    stream = IID().stream(np.arange(5), seed=3)
    together = g(stream)
    alone = torch.cat([Captured(dps_official_style)(stream[i : i + 1]) for i in range(5)])
    assert together.shape == (5, 3) and torch.equal(together, alone)
    r = estimate(g, lambda x: x[:, 0], budget=8, design="antithetic", seed=0, run=RunSettings(batch_size=4))
    assert r["statistic"].width == 0.0
    as_numpy = Captured(lambda n: dps_official_style(n).numpy(), max_batch=1)(stream)
    assert isinstance(as_numpy, np.ndarray) and np.array_equal(as_numpy, together.numpy())
    with pytest.raises(ValueError, match="max_batch must be a positive int"):
        Captured(dps_official_style, max_batch=0)


def test_the_solvers_error_says_what_uqdiff_was_doing():
    g = Captured(dps_official_style)
    with pytest.raises(CapturedCallError) as err:  # first call: it traces the layout at this call's batch
        g(IID().stream(np.arange(2), seed=0))
    text = str(err.value)
    assert "dps_official_style raised RuntimeError while uqdiff was tracing its noise layout" in text
    assert "at batch 2" in text and "pass Captured(fn, max_batch=1) or batch_size=1" in text
    assert isinstance(err.value, CaptureError) and isinstance(err.value.__cause__, RuntimeError)
    g.trace()
    with pytest.raises(CapturedCallError, match=r"while uqdiff was running batch 4: .*max_batch=1\) or batch_size=1"):
        g(IID().stream(np.arange(4), seed=0))

    def broken(n):
        return torch.randn(n, 2) @ torch.ones(3, 3)

    with pytest.raises(CapturedCallError, match=r"broken raised RuntimeError.* at batch 1.*call the sampler directly"):
        Captured(broken).trace()


@pytest.mark.parametrize(
    "error",
    [MemoryError(), RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"), torch.cuda.OutOfMemoryError("oom")],
    ids=["MemoryError", "RuntimeError", "OutOfMemoryError"],
)
def test_out_of_memory_passes_unchanged(error):
    def big(n):
        torch.randn(n, 2)
        raise error

    with pytest.raises(type(error)) as err:
        Captured(big)(IID().stream(np.arange(4), seed=0))
    assert err.value is error


def test_errors_of_the_capture_itself_are_not_rewrapped():
    with pytest.raises(CaptureError) as err:
        Captured(lambda n: torch.rand(n, 2)).trace()
    assert type(err.value) is CaptureError and "torch.rand" in str(err.value)
    with pytest.raises(ValueError, match="holds 2 values per sample"):  # the noise tensor's fault, as before
        Captured(lambda n: torch.randn(n, 2) + torch.randn(n, 2))(torch.zeros(3, 2))


# -- 2. every form of every Gaussian entry point ---------------------------------------------------------
N = 3
MEAN, STD = torch.full((N, 2), 1.5), torch.full((N, 2), 0.5)


def _gen():
    return torch.Generator().manual_seed(11)


def _out(**kw):
    out = torch.empty(N, 2, **kw)
    torch.randn(N, 2, out=out, generator=_gen())
    return out


# name -> (draw(n), (scale, shift) applied to the standard normals, dtype, device)
FORMS = {
    "randn(*size)": (lambda: torch.randn(N, 2), (1, 0)),
    "randn(tuple)": (lambda: torch.randn((N, 2)), (1, 0)),
    "randn(list)": (lambda: torch.randn([N, 2]), (1, 0)),
    "randn(Size)": (lambda: torch.randn(torch.Size([N, 2])), (1, 0)),
    "randn(size=)": (lambda: torch.randn(size=(N, 2)), (1, 0)),
    "randn(size=, every keyword)": (
        lambda: torch.randn(
            size=(N, 2),
            generator=_gen(),
            dtype=torch.float64,
            layout=torch.strided,
            device="cpu",
            requires_grad=True,
            pin_memory=False,
        ),
        (1, 0),
    ),
    "randn(out=)": (_out, (1, 0)),
    "randn(out=float64)": (lambda: _out(dtype=torch.float64), (1, 0)),
    "randn_like(input)": (lambda: torch.randn_like(torch.empty(N, 2)), (1, 0)),
    "randn_like(input=)": (lambda: torch.randn_like(input=torch.empty(N, 2)), (1, 0)),
    "randn_like(every keyword)": (
        lambda: torch.randn_like(
            torch.empty(N, 2),
            dtype=torch.float64,
            layout=torch.strided,
            device="cpu",
            requires_grad=True,
            memory_format=torch.contiguous_format,
            generator=_gen(),
        ),
        (1, 0),
    ),
    "normal(Tensor, float)": (lambda: torch.normal(MEAN, 0.5), (0.5, 1.5)),
    "normal(mean=Tensor)": (lambda: torch.normal(mean=MEAN), (1, 1.5)),
    "normal(mean=Tensor, std=float)": (lambda: torch.normal(mean=MEAN, std=0.5), (0.5, 1.5)),
    "normal(float, Tensor)": (lambda: torch.normal(1.5, STD), (0.5, 1.5)),
    "normal(mean=float, std=Tensor)": (lambda: torch.normal(mean=1.5, std=STD), (0.5, 1.5)),
    "normal(Tensor, Tensor)": (lambda: torch.normal(MEAN, STD), (0.5, 1.5)),
    "normal(mean=Tensor, std=Tensor, generator=)": (
        lambda: torch.normal(mean=MEAN, std=STD, generator=_gen()),
        (0.5, 1.5),
    ),
    "normal(float, float, size)": (lambda: torch.normal(1.5, 0.5, (N, 2)), (0.5, 1.5)),
    "normal(float, float, size=)": (lambda: torch.normal(1.5, 0.5, size=(N, 2)), (0.5, 1.5)),
    "normal(mean=, std=, size=, every keyword)": (
        lambda: torch.normal(
            mean=1.5, std=0.5, size=(N, 2), generator=_gen(), dtype=torch.float64, layout=torch.strided, device="cpu"
        ),
        (0.5, 1.5),
    ),
    "normal(out=)": (lambda: torch.normal(MEAN, STD, out=torch.empty(N, 2, dtype=torch.float64)), (0.5, 1.5)),
    "Tensor.normal_()": (lambda: torch.empty(N, 2).normal_(), (1, 0)),
    "Tensor.normal_(mean, std)": (lambda: torch.empty(N, 2).normal_(1.5, 0.5), (0.5, 1.5)),
    "Tensor.normal_(mean=, std=, generator=)": (
        lambda: torch.empty(N, 2, dtype=torch.float64).normal_(mean=1.5, std=0.5, generator=_gen()),
        (0.5, 1.5),
    ),
    "init.normal_(tensor)": (lambda: torch.nn.init.normal_(torch.empty(N, 2)), (1, 0)),
    "init.normal_(tensor=, mean=, std=, generator=)": (
        lambda: torch.nn.init.normal_(tensor=torch.empty(N, 2), mean=1.5, std=0.5, generator=_gen()),
        (0.5, 1.5),
    ),
}


@pytest.mark.parametrize("form", list(FORMS))
def test_every_gaussian_form_is_the_designs_stream_slot(form):
    draw, (scale, shift) = FORMS[form]
    direct = draw()  # the form outside capture: the dtype, device and grad flag the captured one must have
    g = Captured(lambda n: draw())
    stream = Antithetic().stream(np.arange(2), seed=4)[:N]
    before = torch.random.get_rng_state()
    out = g(stream)
    assert torch.equal(before, torch.random.get_rng_state())  # nothing reached torch's generator
    assert g.layout[0].kind == "sample" and g.layout[0].shape == (2,)
    assert (out.shape, out.dtype, out.device, out.requires_grad) == (
        direct.shape,
        direct.dtype,
        direct.device,
        direct.requires_grad,
    )
    z = stream.slot(0, (2,), offset=0, dtype=out.dtype)
    torch.testing.assert_close(out.detach(), z * scale + shift, rtol=1e-6, atol=1e-6)


def test_randn_like_keeps_the_inputs_memory_format():
    x = torch.empty(N, 4, 2, 2).to(memory_format=torch.channels_last)
    stream = IID().stream(np.arange(N), seed=0)
    for fmt in (torch.preserve_format, torch.channels_last):
        out = Captured(lambda n, fmt=fmt: torch.randn_like(x, memory_format=fmt))(stream)
        assert out.is_contiguous(memory_format=torch.channels_last) and out.stride() == x.stride()
        assert torch.equal(out, stream.slot(0, (4, 2, 2), offset=0))


# -- 3. what the repeat check says about batch dependence ------------------------------------------------


def batch_normalised(n):
    """Normalises by the batch mean: each sample depends on the others, but repeats of a batch agree."""
    x = torch.randn(n, 4)
    return x - x.mean(dim=0, keepdim=True)


def test_check_repeatable_names_batch_dependence():
    report = check_repeatable(Captured(batch_normalised), budget=8)
    assert report.repeatable and not report.batch_consistent and not report.ok
    text = str(report)
    assert text.startswith("NOT batch-consistent (batch dependence)") and "NOT a function of its noise" not in text
    leaky = check_repeatable(Captured(lambda n: torch.randn(n, 4) + torch.from_numpy(np.random.randn(n, 4))))
    assert str(leaky).startswith("NOT a function of its noise")


def test_batch_dependence_fix_fits_a_captured_sampler():
    g = Captured(batch_normalised)
    stream = IID().stream(np.arange(4), seed=0)
    with pytest.raises(RepeatCheckError) as err:
        check_first_batch(g, stream[0:1], g(stream)[0:1], batch=4, where="noise 0")
    text = str(err.value)
    assert "(batch dependence)" in text and "not a function of its noise" not in text
    assert "batch_size=1" in text and "Captured(fn, max_batch=1)" in text and "remove the coupling" in text
    assert "wrap the sampler's own code" not in text
    fixed = Captured(batch_normalised, max_batch=1)  # one noise at a time: no coupling left
    assert check_repeatable(fixed, budget=4).ok


def test_batch_dependence_on_cuda_with_tf32_names_tf32(monkeypatch):
    """On a GPU with TF32 on (PyTorch's cuDNN default) the message says so; without CUDA it does not."""
    g = Captured(batch_normalised)
    stream = IID().stream(np.arange(4), seed=0)

    def message():
        with pytest.raises(RepeatCheckError) as err:
            check_first_batch(g, stream[0:1], g(stream)[0:1], batch=4, where="noise 0")
        return str(err.value)

    assert "allow_tf32" not in message()  # this machine: no CUDA
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    assert "torch.backends.cudnn.allow_tf32 = False" in message()
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    matmul = torch.backends.cuda.matmul.allow_tf32  # a cuBLAS flag monkeypatch cannot restore
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        assert "allow_tf32" not in message()
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul


def test_a_captured_samplers_stray_randomness_fix_does_not_say_capture_it():
    rng = np.random.default_rng(0)
    g = Captured(lambda n: torch.randn(n, 2) + torch.from_numpy(rng.standard_normal((n, 2))).float())
    stream = IID().stream(np.arange(2), seed=0)
    with pytest.raises(RepeatCheckError, match="seed any numpy or Python random source") as err:
        check_first_batch(g, stream[0:1], g(stream)[0:1], batch=2, where="noise 0")
    assert "wrap the sampler's own code" not in str(err.value)


# -- 4. the repeat check's noise: always the design's stream ---------------------------------------------


def test_check_repeatable_feeds_samplers_the_stream_and_generators_its_first_slot():
    seen = []

    def plain(z):
        seen.append(z)
        return z * 2

    check_repeatable(plain, noise_shape=(5,), budget=4, design="antithetic", seed=7, dtype=torch.float64)
    stream = Antithetic().stream(np.arange(2), seed=7, dtype=torch.float64)
    expected = stream.slot(0, (5,), offset=0)
    assert torch.equal(seen[0], expected) and torch.equal(seen[2], expected[:1])

    class StreamReader(Sampler):  # any sampler reads the stream itself, captured or not
        noise_shape = (5,)

        def __call__(self, noise):
            seen.append(noise)
            return noise.slot(0, (5,), offset=0) + noise.slot(1, (5,), offset=5)

    seen.clear()
    assert check_repeatable(StreamReader(), budget=4, seed=7).ok
    assert not isinstance(seen[0], torch.Tensor) and len(seen[0]) == 4 and len(seen[2]) == 1
