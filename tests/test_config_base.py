"""Config files that extend a base file (`base:`), and the dataset configs built on one."""

import json
from pathlib import Path

import pytest

from anchor_service.config import load_config

ROOT = Path(__file__).resolve().parents[1]
JOB_CONFIGS = ROOT / "jobs" / "configs"
# What each dataset config resolved to when every file still stated every key (values that
# differ from config.py's defaults; keys at their default are left out, so adding a field
# with a default does not touch this file). Regenerate only for an intended change.
RESOLVED = Path(__file__).parent / "data" / "job_configs_resolved.json"


def dataset_configs() -> list[Path]:
    return sorted(p for p in JOB_CONFIGS.glob("*.yaml") if not p.name.startswith("_"))


def test_every_dataset_config_resolves_as_before():
    expected = json.loads(RESOLVED.read_text())
    assert sorted(p.name for p in dataset_configs()) == sorted(expected)
    for p in dataset_configs():
        got = load_config(p).model_dump(mode="json", exclude_defaults=True)
        assert got == expected[p.name], p.name
