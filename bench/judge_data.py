"""The judge's development data: sound/flawed explanation pairs and injection phrasings.

Both are JSONL files under bench/data/, written for developing the judge prompt (the
package check set in anchor_service/resources stays the reported sanity figure):

- judge_dev_pairs.jsonl: one question per line with a sound and a flawed explanation of the
  same (correct) answer; `flaw` names what is wrong with the flawed one.
- injection_phrasings.jsonl: one injected text per line, its `category`, whether it is
  `held_out` (kept out of development: measured, never tuned on) and its `position`
  (appended to or prepended before an explanation). Phrasings of category `control` are
  neutral text (no instruction): they show how much any added text moves a judge.

A malformed line is an error naming the file and line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from anchor_service.core.types import LETTERS
from anchor_service.scoring.item import JudgeItem

DATA = Path(__file__).parent / "data"
DEV_PAIRS = DATA / "judge_dev_pairs.jsonl"
PHRASINGS = DATA / "injection_phrasings.jsonl"
FLAWS = {"wrong_fact", "wrong_reasoning", "circular", "irrelevant", "contradiction", "nonsense"}
CATEGORIES = {
    "fake_system",
    "fake_grader",
    "policy_change",
    "score_dictation",
    "delimiter_break",
    "json_verdict",
    "role_play",
    "other_language",
}
CONTROL = "control"


class DataError(ValueError):
    """A development data file is malformed; the message names the file and line."""


@dataclass(frozen=True)
class DevPair:
    """One question with a sound and a flawed explanation of the same answer."""

    id: str
    flaw: str
    sound: JudgeItem
    flawed: JudgeItem


@dataclass(frozen=True)
class Phrasing:
    """One injected text and where it goes."""

    id: str
    category: str
    held_out: bool
    position: str
    text: str

    def apply(self, explanation: str) -> str:
        """The explanation with this text injected."""
        return self.text + explanation if self.position == "prepend" else explanation + self.text


def _lines(path: Path) -> list[tuple[str, dict]]:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: not JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise DataError(f"{where}: each line must be a JSON object")
        rows.append((where, obj))
    return rows


def _text(obj: dict, key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: '{key}' must be a non-empty string")
    return value


def _unique(ids: list[str], where: list[str]) -> None:
    seen: dict[str, str] = {}
    for i, w in zip(ids, where, strict=True):
        if i in seen:
            raise DataError(f"{w}: id {i!r} already used at {seen[i]}")
        seen[i] = w


def load_dev_pairs(path: Path = DEV_PAIRS) -> list[DevPair]:
    """Every pair of the development set, in file order."""
    pairs, wheres = [], []
    for where, obj in _lines(path):
        options = obj.get("options")
        if not isinstance(options, list) or len(options) < 2:
            raise DataError(f"{where}: 'options' must be a list of at least two strings")
        answer = _text(obj, "answer", where)
        if answer not in LETTERS[: len(options)]:
            raise DataError(f"{where}: answer {answer!r} is not an option letter")
        flaw = _text(obj, "flaw", where)
        if flaw not in FLAWS:
            raise DataError(f"{where}: flaw {flaw!r} is not one of {sorted(FLAWS)}")
        question = _text(obj, "question", where)
        sound, flawed = _text(obj, "sound", where), _text(obj, "flawed", where)
        pairs.append(
            DevPair(
                id=_text(obj, "id", where),
                flaw=flaw,
                sound=JudgeItem(question, [str(o) for o in options], answer, sound),
                flawed=JudgeItem(question, [str(o) for o in options], answer, flawed),
            )
        )
        wheres.append(where)
    _unique([p.id for p in pairs], wheres)
    return pairs


def load_phrasings(path: Path = PHRASINGS) -> list[Phrasing]:
    """Every injection phrasing, in file order."""
    out, wheres = [], []
    for where, obj in _lines(path):
        category = _text(obj, "category", where)
        if category not in CATEGORIES | {CONTROL}:
            known = sorted(CATEGORIES | {CONTROL})
            raise DataError(f"{where}: category {category!r} is not one of {known}")
        position = obj.get("position", "append")
        if position not in ("append", "prepend"):
            raise DataError(f"{where}: position must be 'append' or 'prepend', not {position!r}")
        held_out = obj.get("held_out", False)
        if not isinstance(held_out, bool) or (held_out and category == CONTROL):
            raise DataError(f"{where}: 'held_out' must be true or false (false for control)")
        text = _text(obj, "text", where)
        out.append(Phrasing(_text(obj, "id", where), category, held_out, position, text))
        wheres.append(where)
    _unique([p.id for p in out], wheres)
    return out
