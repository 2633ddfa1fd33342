"""What can go wrong loading examples, and what a load returns (examples + skipped rows).

Every reader funnels its rows through `ExampleRows`, so all sources share one policy: a
malformed row raises `RowError` (file, 1-based line, what is wrong) or, with
`on_bad_row: skip`, is counted and skipped; a duplicate `prompt_id` is always an error
naming both rows (skipping would silently pick one of two different items).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from anchor_service.core.types import Example

log = logging.getLogger(__name__)

OnBadRow = Literal["error", "skip"]


class DataError(ValueError):
    """Examples could not be loaded; the message says what, where, and what to do."""


class DataNotFoundError(DataError):
    """A data directory, file or split does not exist; the message lists what was tried."""


class RowError(DataError):
    """One malformed row: `where` (file or dataset), 1-based `line`, and `reason`."""

    def __init__(self, where: str, line: int, reason: str, unit: str = "line"):
        self.where = where
        self.line = line
        self.reason = reason
        super().__init__(f"{where}, {unit} {line}: {reason}")


@dataclass
class LoadResult:
    """Examples of one split, how many rows were skipped and why, and where they came from."""

    examples: list[Example]
    skipped: int = 0
    skipped_reasons: list[str] = field(default_factory=list)
    source: str = ""


class ExampleRows:
    """Collects the examples of one source under the `on_bad_row` policy (see module doc)."""

    def __init__(self, where: str, on_bad_row: OnBadRow = "error", unit: str = "line"):
        if on_bad_row not in ("error", "skip"):
            raise DataError(f"on_bad_row must be 'error' or 'skip', got {on_bad_row!r}")
        self.where = where
        self.unit = unit  # "line" in files, "row" in Hugging Face datasets
        self.on_bad_row = on_bad_row
        self.examples: list[Example] = []
        self.reasons: list[str] = []
        self._line_of: dict[str, int] = {}

    def add(self, example: Example, line: int) -> None:
        """Keep an example read at `line`; a prompt_id seen before is a DataError."""
        first = self._line_of.get(example.prompt_id)
        if first is not None:
            raise DataError(
                f"{self.where}: duplicate prompt_id '{example.prompt_id}' at {self.unit} {first} "
                f"and {self.unit} {line}; make the ids unique "
                "(or drop the id column so rows are numbered)"
            )
        self._line_of[example.prompt_id] = line
        self.examples.append(example)

    def take(self, line: int, read: Callable[..., Example], *args: Any) -> None:
        """Keep the example `read(*args)` makes of the row at `line`; a ValueError it raises
        is a malformed row (`bad`, with its message)."""
        try:
            example = read(*args)
        except ValueError as exc:
            self.bad(line, str(exc))
            return
        self.add(example, line)

    def bad(self, line: int, reason: str) -> None:
        """A malformed row: raise RowError, or record it and go on when skipping."""
        error = RowError(self.where, line, reason, self.unit)
        if self.on_bad_row == "error":
            raise error
        log.warning("skipping malformed row: %s", error)
        self.reasons.append(str(error))

    def result(self, source: str | None = None) -> LoadResult:
        """The LoadResult of everything collected so far."""
        return LoadResult(
            examples=list(self.examples),
            skipped=len(self.reasons),
            skipped_reasons=list(self.reasons),
            source=source or f"{self.where} ({len(self.examples)} examples)",
        )
