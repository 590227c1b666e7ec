"""Ray execution: shards of groups on Ray workers, merged on the driver into the same result, bit for bit.

A shard is a range of group indices. Each worker evaluates its shard batch by
batch (the same code as an in-process run) into fresh accumulators and
returns them; the driver merges them along the accumulators' canonical tree,
so the result does not depend on the number of workers, the shard size or
the order in which shards finish. A shard whose worker dies is resubmitted
by Ray (``max_retries``); its result reaches the driver once, and the driver
records every merged range, so a shard is never lost nor counted twice (the
accumulators refuse a group counted twice). Install with ``pip install uqdiff[ray]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from uqdiff.estimators.accumulator import GroupAccumulator


def _import_ray():
    try:
        import ray
    except ImportError as exc:
        raise ImportError("RayExecutor needs Ray: pip install 'uqdiff[ray]'") from exc
    return ray


def _run_shard(evaluator, lo: int, hi: int) -> tuple[int, dict[str, GroupAccumulator], dict[str, tuple[int, ...]]]:
    """Groups lo..hi-1 on a worker: (lo, accumulators, per-image output shapes seen)."""
    accs = {name: GroupAccumulator() for name in evaluator.stats}
    for start, parts in evaluator.batches(lo, hi):
        for name, (means, within) in parts.items():
            accs[name].add(start, means, within)
    return lo, accs, evaluator.output_shapes


class RayExecutor:
    """Run the groups of :func:`uqdiff.estimate` on ``num_workers`` concurrent Ray tasks.

    ``num_gpus_per_worker`` > 0 asks Ray for that share of a GPU per task
    (the generator's device should then be ``"cuda"``). ``shard_groups`` sets
    the groups per task, rounded up to whole batches (default: about four
    shards per worker, so a slow or restarted shard does not hold the whole run). If Ray is not running yet,
    ``ray.init(**init_kwargs)`` starts it.
    """

    def __init__(
        self,
        num_workers: int = 2,
        *,
        num_cpus_per_worker: float = 1,
        num_gpus_per_worker: float = 0,
        shard_groups: int | None = None,
        max_retries: int = 3,
        init_kwargs: dict[str, Any] | None = None,
    ) -> None:
        for name, value in (("num_workers", num_workers), ("shard_groups", shard_groups or 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries!r}")
        self.num_workers, self.shard_groups, self.max_retries = num_workers, shard_groups, max_retries
        self.num_cpus_per_worker, self.num_gpus_per_worker = num_cpus_per_worker, num_gpus_per_worker
        self.init_kwargs = dict(init_kwargs or {})
        _import_ray()

    def check_resources(self, cluster: dict[str, float]) -> None:
        """Refuse a worker that no node of the cluster can host: Ray would wait for it for ever."""
        for key, asked, option in (
            ("GPU", self.num_gpus_per_worker, "num_gpus_per_worker"),
            ("CPU", self.num_cpus_per_worker, "num_cpus_per_worker"),
        ):
            have = float(cluster.get(key, 0))
            if asked > have:
                raise RuntimeError(
                    f"RayExecutor asks {asked:g} {key} per worker ({option}={asked!r}) but the Ray cluster has "
                    f"{have:g}: its tasks would wait for ever. Ask for at most {have:g} ({option}=0 runs on "
                    f"CPUs only){', or connect to a cluster with GPUs (init_kwargs=dict(address=...))' if key == 'GPU' else ''}"
                )

    def shards(self, lo: int, hi: int, per_batch: int = 1) -> list[tuple[int, int]]:
        """Ranges covering lo..hi-1, each a whole number of ``per_batch``-group batches.

        Whole batches make every generator call see exactly the noises it sees
        in an in-process run, so even a generator whose arithmetic depends on
        the batch size (BLAS kernels do) gives the same bits.
        """
        size = self.shard_groups or math.ceil((hi - lo) / (4 * self.num_workers))
        size = per_batch * max(1, math.ceil(size / per_batch))
        return [(a, min(a + size, hi)) for a in range(lo, hi, size)]

    def run(self, evaluator, lo: int, hi: int, on_shard: Callable[[int, dict, dict], None]) -> None:
        """Evaluate groups lo..hi-1; call ``on_shard(first group, accumulators, shapes)`` as each shard ends."""
        ray = _import_ray()
        if not ray.is_initialized():
            ray.init(**self.init_kwargs)
        self.check_resources(ray.cluster_resources())
        task = ray.remote(_run_shard).options(
            num_cpus=self.num_cpus_per_worker,
            num_gpus=self.num_gpus_per_worker,
            max_retries=self.max_retries,
            retry_exceptions=False,
        )
        ref = ray.put(evaluator)
        todo = self.shards(lo, hi, evaluator.groups_per_batch)[::-1]
        running = []
        try:
            while todo or running:
                while todo and len(running) < self.num_workers:
                    a, b = todo.pop()
                    running.append(task.remote(ref, a, b))
                done, running = ray.wait(running, num_returns=1)
                on_shard(*ray.get(done[0]))
        finally:
            for r in running:
                ray.cancel(r, force=True)
