"""Files shipped inside the package: the demo config and the judge check set."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def demo_config_path() -> Path:
    """The packaged demo config (CPU-sized, embedded model, built-in demo task)."""
    return Path(str(resources.files("anchor_service.resources").joinpath("demo.yaml")))
