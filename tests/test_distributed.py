"""Ray execution on a real local Ray instance (2 CPUs): bit-identical to in-process runs, crashed shards retried."""

import os
import sys

import numpy as np
import pytest
import torch

from uqdiff import Checkpoint, KAntithetic, SobolRQMC, TargetPrecision, estimate
from uqdiff.estimators.checkpoint import load
from uqdiff.estimators.settings import RunSettings
from uqdiff.samplers import GaussianDDIM, LinearGenerator

ray = pytest.importorskip("ray")
from uqdiff.estimators.distributed import RayExecutor  # noqa: E402

ORACLE = GaussianDDIM(np.linspace(-0.5, 0.5, 6), std=0.5, num_steps=6)
STATS = {"m2": lambda x: (x**2).mean(dim=1), "map": lambda x: x}


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.mark.parametrize("design", ["mc", KAntithetic(4), SobolRQMC(8)], ids=str)
def test_ray_result_is_bit_identical_to_in_process(design):
    kw = dict(budget=2048, design=design, seed=9, run=RunSettings(batch_size=40, dtype=torch.float64))
    ref = estimate(ORACLE, STATS, **kw)
    for workers, shard in [(1, None), (2, 37), (2, 200)]:
        got = estimate(
            ORACLE, STATS, **{**kw, "run": kw["run"].replace(executor=RayExecutor(workers, shard_groups=shard))}
        )
        assert got.to_json() == ref.to_json(), (workers, shard)


def test_shards_are_whole_batches_so_matmul_generators_match_too():
    """BLAS results can depend on the batch size; shards cut at batch boundaries keep every call identical."""
    g = LinearGenerator(np.zeros(6), np.random.default_rng(1).standard_normal((6, 6)))
    assert RayExecutor(2, shard_groups=37).shards(0, 500, per_batch=20) == [
        (a, min(a + 40, 500)) for a in range(0, 500, 40)
    ]
    kw = dict(budget=2000, design="antithetic", seed=3, run=RunSettings(batch_size=40))
    ref = estimate(g, STATS, **kw)
    got = estimate(g, STATS, **{**kw, "run": kw["run"].replace(executor=RayExecutor(2, shard_groups=37))})
    assert got.to_json() == ref.to_json()


def test_sequential_run_on_ray_matches_in_process():
    kw = dict(stopping=TargetPrecision(halfwidth=0.01, max_budget=50_000), design="antithetic", seed=4)
    ref = estimate(ORACLE, STATS, **kw)
    got = estimate(ORACLE, STATS, **kw, run=RunSettings(executor=RayExecutor(2)))
    assert got.to_json() == ref.to_json() and ref.config["stopping"]["main_groups"] > 100


def test_crashed_worker_shard_is_retried_once_and_counted_once(tmp_path):
    """The first worker to reach group 300 dies (os._exit); Ray reruns its shard; nothing lost, nothing doubled."""
    marker = str(tmp_path / "crashed")

    class CrashOnce:
        noise_shape = ORACLE.noise_shape

        def __init__(self):
            self.seen = 0

        def __call__(self, z):
            self.seen += len(z)
            if self.seen > 100 and not os.path.exists(marker):
                open(marker, "w").close()
                os._exit(1)  # the worker process dies mid-shard, as on a node failure
            return ORACLE(z)

    kw = dict(budget=1600, design="antithetic", seed=2, run=RunSettings(batch_size=32, dtype=torch.float64))
    ref = estimate(ORACLE, STATS, **kw)
    path = tmp_path / "run.ckpt"
    got = estimate(
        CrashOnce(),
        STATS,
        **{
            **kw,
            "run": kw["run"].replace(
                executor=RayExecutor(2, shard_groups=100, max_retries=2), checkpoint=Checkpoint(path, every=1)
            ),
        },
    )
    assert os.path.exists(marker)
    assert got.to_dict()["results"] == ref.to_dict()["results"] and got.budget == 1600
    assert load(path)[1]["main"].done == [(0, 800)]


def test_ray_resumes_an_in_process_checkpoint(tmp_path):
    kw = dict(budget=1024, design=KAntithetic(4), seed=6, run=RunSettings(batch_size=16, dtype=torch.float64))
    ref = estimate(ORACLE, STATS, **kw)
    path = tmp_path / "run.ckpt"
    stop = RuntimeError("stopped by the test")

    def stop_midway(n, accs):
        if n >= 400:
            raise stop

    with pytest.raises(RuntimeError, match="stopped by the test"):
        estimate(ORACLE, STATS, **{**kw, "run": kw["run"].replace(checkpoint=path, callback=stop_midway)})
    assert 0 < load(path)[1]["main"].n_done < 256
    got = estimate(
        ORACLE,
        STATS,
        **{
            **kw,
            "run": kw["run"].replace(
                checkpoint=Checkpoint(path, resume=True), executor=RayExecutor(2, shard_groups=50)
            ),
        },
    )
    assert got.to_json() == ref.to_json()


def test_missing_ray_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what an environment without Ray looks like to import
    with pytest.raises(ImportError, match=r"pip install 'uqdiff\[ray\]'"):
        RayExecutor(2)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without GPUs")
def test_gpus_asked_of_a_cluster_without_them_fail_fast_with_the_fix():
    import time

    t0 = time.perf_counter()
    with pytest.raises(RuntimeError, match=r"asks 1 GPU per worker .* cluster has 0.*num_gpus_per_worker=0"):
        estimate(ORACLE, STATS, budget=64, run=RunSettings(executor=RayExecutor(2, num_gpus_per_worker=1)))
    assert time.perf_counter() - t0 < 60
    with pytest.raises(RuntimeError, match="asks 3 CPU per worker"):
        estimate(ORACLE, STATS, budget=64, run=RunSettings(executor=RayExecutor(2, num_cpus_per_worker=3)))
