"""docs/RUNDIR.md lists exactly the columns and keys the stages write."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from anchor_service.core.pairs import DROP_REASONS, Pair
from anchor_service.core.types import CATEGORIES, CRITERIA
from anchor_service.pipeline.debate import DebateStage
from anchor_service.pipeline.judge import SCORE_COLUMNS
from anchor_service.pipeline.sample import SampleStage
from anchor_service.schema import TRAIN_LOG_COLUMNS

DOC = Path(__file__).resolve().parents[1] / "docs" / "RUNDIR.md"


def documented_columns(heading: str) -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([a-z_/]+)` \|", section, re.M)


@pytest.mark.parametrize(
    ("heading", "columns"),
    [
        ("samples.parquet", SampleStage.COLUMNS),
        ("debates.parquet", DebateStage.COLUMNS),
        ("scores.parquet", SCORE_COLUMNS),
        ("pairs-&lt;strategy&gt;.parquet", [f.name for f in fields(Pair)]),
        ("models/&lt;model&gt;/train_log.parquet", TRAIN_LOG_COLUMNS),
    ],
)
def test_columns_are_the_written_ones(heading, columns):
    assert documented_columns(heading) == list(columns)


def test_stats_and_names_are_the_codes():
    text = DOC.read_text(encoding="utf-8")
    stats = text.split("\n## stats-&lt;strategy&gt;.json\n", 1)[1].split("\n## ", 1)[0]
    for reason in DROP_REASONS:
        assert f'"{reason}"' in stats
    for name in (*CATEGORIES, *CRITERIA):
        assert f"`{name}`" in text
