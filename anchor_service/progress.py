"""Progress of a long stage: a tqdm bar on a terminal, a few log lines otherwise.

Counts are of the stage's input rows (prompts, pairs, responses to score), so a stage whose
rows produce several output rows each (a debate writes one row per attempt) can never show
more done than its total. The rows a resumed stage found already written count as done
from the start, so the bar and the rate are about the work left.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, TextIO

log = logging.getLogger("anchor_service.progress")

# Without a terminal: a line when the stage starts, at each quarter, and at the end.
_LINES_AT = (0.25, 0.5, 0.75)


class StageProgress:
    """Rows done out of a stage's total; `bar=None` decides from whether stderr is a terminal."""

    def __init__(
        self,
        name: str,
        total: int,
        done: int = 0,
        enabled: bool = True,
        bar: bool | None = None,
        stream: TextIO | None = None,
    ) -> None:
        self.name, self.total, self.enabled = name, max(0, int(total)), enabled
        self.done = min(max(0, int(done)), self.total)
        self._start_done = self.done
        self._t0 = time.perf_counter()
        self._next_line = 0
        stream = stream if stream is not None else sys.stderr
        if bar is None:
            bar = bool(getattr(stream, "isatty", lambda: False)())
        self._bar: Any = None
        if not enabled:
            return
        if bar:
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=self.total,
                initial=self.done,
                desc=name,
                unit="row",
                file=stream,
                dynamic_ncols=True,
                smoothing=0.1,
            )
        else:
            resumed = f", {self.done} already written" if self.done else ""
            log.info("%s: %d rows to do%s", name, self.total - self.done, resumed)
            self._skip_passed_lines()

    def _skip_passed_lines(self) -> None:
        frac = self.done / self.total if self.total else 1.0
        while self._next_line < len(_LINES_AT) and frac >= _LINES_AT[self._next_line]:
            self._next_line += 1

    def rate(self) -> float:
        """Rows per second since this stage (or its resumption) started."""
        elapsed = time.perf_counter() - self._t0
        return (self.done - self._start_done) / elapsed if elapsed > 0 else 0.0

    def update(self, rows: int) -> None:
        """`rows` more input rows are done (clamped so the count never exceeds the total)."""
        new = min(self.total, self.done + max(0, int(rows)))
        step, self.done = new - self.done, new
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(step)
            return
        passed = self._next_line
        self._skip_passed_lines()
        if self._next_line > passed:
            rate = self.rate()
            left = (self.total - self.done) / rate if rate > 0 else float("nan")
            log.info(
                "%s: %d/%d rows done, %.2f rows/s, about %s left",
                self.name,
                self.done,
                self.total,
                rate,
                _duration(left),
            )

    def close(self) -> None:
        """End the bar, or write the stage's last line."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
            self._bar = None
            return
        elapsed = time.perf_counter() - self._t0
        log.info(
            "%s: %d/%d rows done in %s (%.2f rows/s)",
            self.name,
            self.done,
            self.total,
            _duration(elapsed),
            self.rate(),
        )

    def __enter__(self) -> StageProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _duration(seconds: float) -> str:
    if seconds != seconds:  # NaN: no rate yet
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, s = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {s:02d} s"
    hours, m = divmod(minutes, 60)
    return f"{hours} h {m:02d} min"
