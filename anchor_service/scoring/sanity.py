"""The judge's own reliability: does it rank a sound explanation above a nonsensical one?

METHOD.md step 7: on a fixed check set (10 questions shipped with the package; for the oracle,
generated demo pairs), count how often the sound explanation ranks higher by the pair
ordering (`core.pairs.rank_value`: score, then score_expected). A tie fails, and so does an
unscored response.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from importlib import resources
from typing import Any

from anchor_service.core.pairs import rank_value
from anchor_service.core.types import LETTERS, UNSCORED, Judgement
from anchor_service.scoring.item import JudgeItem
from anchor_service.scoring.scorer import Scorer

log = logging.getLogger(__name__)

CHECKSET = "judge_checkset.json"
# Below this many passes, results are a pipeline check, not evidence (METHOD.md step 7).
RELIABLE_AT = 8


class CheckSetError(ValueError):
    """The judge check set file is malformed; the message names the item and field."""


def load_checkset(text: str | None = None) -> list[tuple[JudgeItem, JudgeItem]]:
    """(sound, nonsensical) item pairs of the shipped check set (or of the given JSON text)."""
    if text is None:
        text = resources.files("anchor_service.resources").joinpath(CHECKSET).read_text("utf-8")
    try:
        items = json.loads(text)["items"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CheckSetError(f"{CHECKSET}: not a JSON object with an 'items' list ({exc})") from None
    pairs = []
    for n, raw in enumerate(items, start=1):
        where = f"{CHECKSET} item {n} ({raw.get('id', '?') if isinstance(raw, dict) else '?'})"
        try:
            question, options, answer = raw["question"], list(raw["options"]), raw["answer"]
            sound, nonsense = raw["sound"], raw["nonsensical"]
        except (KeyError, TypeError) as exc:
            raise CheckSetError(f"{where}: missing field {exc}") from None
        if answer not in LETTERS[: len(options)]:
            raise CheckSetError(f"{where}: answer {answer!r} is not an option letter")
        if not str(sound).strip() or not str(nonsense).strip():
            raise CheckSetError(f"{where}: 'sound' and 'nonsensical' must both be non-empty")
        meta = {"id": raw.get("id"), "topic": raw.get("topic")}
        pairs.append(
            (
                JudgeItem(question, options, answer, sound, meta=dict(meta, kind="sound")),
                JudgeItem(question, options, answer, nonsense, meta=dict(meta, kind="nonsensical")),
            )
        )
    return pairs


def judge_sanity(
    judge: Scorer, items: Sequence[tuple[JudgeItem, JudgeItem]] | None = None
) -> dict[str, Any]:
    """{"passed": k, "total": n, "margins": [...], "expected_margins": [...]} for a judge.

    A margin is the sound minus the nonsensical score (None when either is unscored);
    `expected_margins` is the same for score_expected (None where it is null).
    """
    pairs = list(items) if items is not None else load_checkset()
    flat = [item for pair in pairs for item in pair]
    return sanity_figure(judge.score(flat))


def sanity_figure(judged: Sequence[Judgement]) -> dict[str, Any]:
    """The sanity figure from judgements in (sound, nonsensical) order, pair after pair."""
    n_pairs = len(judged) // 2
    passed = 0
    margins: list[int | None] = []
    expected_margins: list[float | None] = []
    for k in range(n_pairs):
        sound, nonsense = judged[2 * k], judged[2 * k + 1]
        ok_scores = sound.status != UNSCORED and nonsense.status != UNSCORED
        if not ok_scores or sound.score is None or nonsense.score is None:
            margins.append(None)
            expected_margins.append(None)
            continue
        margins.append(sound.score - nonsense.score)
        if sound.score_expected is not None and nonsense.score_expected is not None:
            expected_margins.append(round(sound.score_expected - nonsense.score_expected, 3))
        else:
            expected_margins.append(None)
        if rank_value(sound.score, sound.score_expected) > rank_value(
            nonsense.score, nonsense.score_expected
        ):
            passed += 1
    if passed < RELIABLE_AT * n_pairs / 10:
        log.warning(
            "judge sanity: sound explanation ranked higher on only %d of %d pairs",
            passed,
            n_pairs,
        )
    return {
        "passed": passed,
        "total": n_pairs,
        "margins": margins,
        "expected_margins": expected_margins,
    }
