"""StageProgress: a bar on a terminal, a few log lines otherwise, never past the total."""

from __future__ import annotations

import io
import logging

from anchor_service.progress import StageProgress


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "anchor_service.progress"]


def test_without_a_terminal_a_line_at_start_each_quarter_and_end(caplog):
    with caplog.at_level(logging.INFO, logger="anchor_service.progress"):
        with StageProgress("judge", 40, stream=io.StringIO()) as p:
            for _ in range(10):
                p.update(4)
    lines = _lines(caplog)
    assert lines[0] == "judge: 40 rows to do"
    assert [line.split(",")[0] for line in lines[1:4]] == [
        "judge: 12/40 rows done",
        "judge: 20/40 rows done",
        "judge: 32/40 rows done",
    ]
    assert lines[4].startswith("judge: 40/40 rows done in ")
    assert len(lines) == 5


def test_the_count_is_clamped_to_the_total(caplog):
    with caplog.at_level(logging.INFO, logger="anchor_service.progress"):
        p = StageProgress("debate", 40, stream=io.StringIO())
        p.update(30)
        p.update(14)  # more than is left: e.g. rows counted twice by a caller
        p.close()
    assert p.done == 40
    assert _lines(caplog)[-1].startswith("debate: 40/40 rows done in ")


def test_a_resumed_stage_starts_at_what_was_written(caplog):
    with caplog.at_level(logging.INFO, logger="anchor_service.progress"):
        p = StageProgress("sample", 100, done=60, stream=io.StringIO())
        p.update(20)
        p.close()
    lines = _lines(caplog)
    assert lines[0] == "sample: 40 rows to do, 60 already written"
    # 60% was already past the first two quarters: the next line is at 75%.
    assert lines[1].startswith("sample: 80/100 rows done")


def test_on_a_terminal_a_tqdm_bar_with_rate(caplog):
    out = _Tty()
    with caplog.at_level(logging.INFO, logger="anchor_service.progress"):
        with StageProgress("sample", 8, stream=out) as p:
            p.update(3)
            p.update(5)
    text = out.getvalue()
    assert "sample" in text and "8/8" in text and "row/s" in text
    assert _lines(caplog) == []  # the bar replaces the lines


def test_disabled_prints_nothing(caplog):
    out = _Tty()
    with caplog.at_level(logging.INFO, logger="anchor_service.progress"):
        with StageProgress("sample", 8, enabled=False, stream=out) as p:
            p.update(8)
    assert out.getvalue() == "" and _lines(caplog) == []
