"""Attach to a Ray cluster, or start a local one sized for a small machine."""

from __future__ import annotations

import logging
import os

from anchor_service.config import ClusterConfig

log = logging.getLogger(__name__)


def ensure_ray(cfg: ClusterConfig | None = None) -> None:
    """ray.init once: `cfg.address`, else RAY_ADDRESS, else a local cluster with cfg.num_cpus."""
    import ray

    if ray.is_initialized():
        return
    cfg = cfg or ClusterConfig()
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    # Workers inherit the driver's logging level; keep Ray's own chatter down.
    kwargs = {"log_to_driver": True, "logging_level": logging.WARNING}
    if address:
        log.info("attaching to Ray at %s", address)
        ray.init(address=address, **kwargs)
    else:
        log.info("starting a local Ray cluster with %s logical CPUs", cfg.num_cpus)
        ray.init(
            num_cpus=cfg.num_cpus,
            object_store_memory=cfg.object_store_memory,
            include_dashboard=False,
            **kwargs,
        )
