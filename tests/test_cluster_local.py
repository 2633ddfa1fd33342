"""The local cluster `ensure_ray` starts: settings for a small machine, checked on real Ray."""

from __future__ import annotations

import os
import time

import psutil
import pytest

from anchor_service import cluster
from anchor_service.config import ClusterConfig


@pytest.fixture
def fresh_local_cluster(monkeypatch):
    import ray

    if ray.is_initialized():
        ray.shutdown()
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    for key in cluster.LOCAL_TRAIN_ENV | cluster.LEAN_TRAIN_ENV:
        monkeypatch.delenv(key, raising=False)
    cluster.ensure_ray(ClusterConfig())
    yield ray
    ray.shutdown()


def test_local_cluster_prestarts_no_idle_workers_and_sets_train_env(fresh_local_cluster):
    ray = fresh_local_cluster
    for key, value in (cluster.LOCAL_TRAIN_ENV | cluster.LEAN_TRAIN_ENV).items():
        assert os.environ[key] == value
    raylet = ray._private.worker._global_node.all_processes["raylet"][0]  # noqa: SLF001
    time.sleep(3)  # Ray prestarts its idle workers right after the driver connects.

    def workers() -> list[str]:
        names = []
        for child in psutil.Process(raylet.process.pid).children(recursive=True):
            try:
                names.append(" ".join(child.cmdline()))
            except psutil.Error:
                continue
        return [n for n in names if n.startswith("ray::")]

    assert not [w for w in workers() if w.startswith("ray::IDLE")], workers()

    @ray.remote
    def one() -> int:
        return 1

    # Workers still start on demand.
    assert ray.get(one.remote()) == 1
