"""docs/METHOD.md states the defaults of config.py and names only keys that exist."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from anchor_service.config import RunConfig

DOC = Path(__file__).resolve().parents[1] / "docs" / "METHOD.md"


def lookup(cfg, dotted: str):
    node = cfg
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


def test_defaults_table_matches_config():
    text = DOC.read_text(encoding="utf-8")
    table = text.split("\n## Defaults at a glance\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z_.]+)` \| `([^`]*)` \|$", table, re.M)
    assert len(rows) >= 30
    cfg = RunConfig()
    for key, shown in rows:
        assert lookup(cfg, key) == yaml.safe_load(shown), key


def test_every_dotted_key_named_exists():
    text = DOC.read_text(encoding="utf-8")
    sections = set(RunConfig.model_fields)
    cfg = RunConfig()
    named = set(re.findall(r"`([a-z_]+(?:\.[a-z_]+)+)(?:\.\*)?`", text))
    keys = {k for k in named if k.split(".")[0] in sections}
    assert len(keys) >= 30
    for key in keys:
        lookup(cfg, key)  # AttributeError names a key that is not in config.py
