"""The built-in demo task: short, seeded, procedurally generated multiple-choice questions.

Three families, mixed 50/30/20:
- `arithmetic`: "What is 27 + 15?" (operands 2-59, results positive). Distractors: off by
  one, off by ten, and the other operation (27 - 15).
- `compare`: "Which number is the largest?" (or smallest) over four distinct numbers 10-99.
- `units`: "Which length is the longest?" (or shortest) over four lengths written in m, cm
  or mm (at least two units), e.g. 1.2 m, 130 cm, 900 mm, 1.1 m.

Every question has four options; the gold position is balanced over A-D (each block of four
questions uses every position once, in a seeded order). Splits are disjoint: an item (its
question and its set of options) belongs to one split only, decided by a seeded hash, so a
split is generated without generating the others; within a split items are distinct. The
same (seed, split) always gives the same list, and a shorter list is a prefix of a longer one.

`meta` (JSON-serialisable) keeps what a checker needs (`anchor_service.demo.oracle`):
`family`, `operation` (`+`, `-`, `max`, `min`), `operands` (arithmetic: the two numbers;
compare and units: the four option values in option order), `result`, `result_text`, `gold`
(letter), `unit` (`mm` for the units family, whose values are all in mm; else None) and
`distractors`: for each wrong option `{option, text, value, why, kind}`, e.g.
`{"option": "C", "text": "52", "value": 52, "why": "off by ten", "kind": "off_by_ten"}`.
"""

from __future__ import annotations

import random
from collections.abc import Collection
from typing import Any

from anchor_service.core.keys import key_seed, keyed_rng
from anchor_service.core.types import LETTERS, Example
from anchor_service.data.errors import DataError

FAMILIES: tuple[str, ...] = ("arithmetic", "compare", "units")
_FAMILY_WEIGHTS = (0.5, 0.3, 0.2)
# A hash of the item picks its split; three buckets so that a dev split is disjoint too.
_SPLIT_BUCKETS = {"train": 0, "dev": 1, "test": 2}
_SPLIT_NAMES = {"train": "train", "dev": "dev", "eval": "dev", "validation": "dev", "test": "test"}
UNIT_MM = {"mm": 1, "cm": 10, "m": 1000}
# Defects `demo_response` can put into an explanation (tests, the oracle's check pairs, and
# training text of varied quality).
DEFECTS: tuple[str, ...] = (
    "wrong_result",
    "false_equation",
    "no_numbers",
    "no_distractors",
    "contradiction",
    "repetition",
)


def _num(value: float) -> str:
    return f"{value:g}"


def _arithmetic(rng: random.Random) -> dict[str, Any]:
    while True:
        op = rng.choice("+-")
        if op == "+":
            a, b = rng.randint(2, 39), rng.randint(2, 39)
            result = a + b
            hi, lo = max(a, b), min(a, b)
            wrong, wrong_expr = hi - lo, f"{hi} - {lo}"
        else:
            a = rng.randint(12, 59)
            b = rng.randint(2, a - 2)
            result = a - b
            wrong, wrong_expr = a + b, f"{a} + {b}"
        one = result + rng.choice((-1, 1))
        ten = result + rng.choice((-10, 10))
        if ten <= 0:
            ten = result + 10
        values = [result, one, ten, wrong]
        # Distractors must differ from each other and from the operands, or a mention of an
        # operand would read as a word about a distractor.
        if len(set(values)) < 4 or min(values) <= 0 or set(values) & {a, b}:
            continue
        return {
            "family": "arithmetic",
            "question": f"What is {a} {op} {b}?",
            "operation": op,
            "operands": [a, b],
            "result": result,
            "result_text": str(result),
            "unit": None,
            "distractors": [
                {"text": str(one), "value": one, "why": "off by one", "kind": "off_by_one"},
                {"text": str(ten), "value": ten, "why": "off by ten", "kind": "off_by_ten"},
                {
                    "text": str(wrong),
                    "value": wrong,
                    "why": f"wrong operation: {wrong_expr} = {wrong}",
                    "kind": "wrong_operation",
                },
            ],
        }


def _extreme(
    op: str, values: list[int], texts: list[str], family: str, question: str, unit: str | None
) -> dict[str, Any]:
    result = max(values) if op == "max" else min(values)
    gold = values.index(result)
    word = "smaller" if op == "max" else "larger"
    kind = "smaller" if op == "max" else "larger"
    if family == "units":
        word = "shorter" if op == "max" else "longer"
        kind = word
    return {
        "family": family,
        "question": question,
        "operation": op,
        "operands": values,
        "result": result,
        "result_text": texts[gold],
        "unit": unit,
        "distractors": [
            {"text": t, "value": v, "why": f"{word} than {texts[gold]}", "kind": kind}
            for v, t in zip(values, texts, strict=True)
            if v != result
        ],
    }


def _compare(rng: random.Random) -> dict[str, Any]:
    op = rng.choice(("max", "min"))
    values = rng.sample(range(10, 100), 4)
    word = "largest" if op == "max" else "smallest"
    return _extreme(
        op, values, [str(v) for v in values], "compare", f"Which number is the {word}?", None
    )


def _length_text(cm: int, unit: str) -> str:
    if unit == "m":
        return f"{_num(cm / 100)} m"
    if unit == "mm":
        return f"{cm * 10} mm"
    return f"{cm} cm"


def _units(rng: random.Random) -> dict[str, Any]:
    op = rng.choice(("max", "min"))
    cms = rng.sample(range(20, 300), 4)
    while True:
        units = [rng.choice(("m", "cm", "mm")) for _ in cms]
        if len(set(units)) >= 2:
            break
    texts = [_length_text(cm, u) for cm, u in zip(cms, units, strict=True)]
    word = "longest" if op == "max" else "shortest"
    values = [cm * UNIT_MM["cm"] for cm in cms]
    return _extreme(op, values, texts, "units", f"Which length is the {word}?", "mm")


_DRAFTERS = {"arithmetic": _arithmetic, "compare": _compare, "units": _units}


def demo_split(split: str) -> str:
    """`train`, `dev` or `test` (`eval`/`validation` mean dev) for the demo task."""
    name = _SPLIT_NAMES.get(split.strip().lower())
    if name is None:
        raise DataError(f"demo task: unknown split '{split}'; use train, dev or test")
    return name


def _place(draft: dict[str, Any], position: int, rng: random.Random) -> tuple[list[str], dict]:
    """Options with the gold text at `position` and the distractors around it (shuffled)."""
    distractors = list(draft["distractors"])
    rng.shuffle(distractors)
    ordered: list[dict[str, Any] | None] = list(distractors)
    ordered.insert(position, None)
    options, placed = [], []
    for i, d in enumerate(ordered):
        if d is None:
            options.append(draft["result_text"])
        else:
            options.append(d["text"])
            placed.append({"option": LETTERS[i], **d})
    meta = {k: v for k, v in draft.items() if k != "question"}
    meta["gold"] = LETTERS[position]
    meta["distractors"] = placed
    if draft["family"] != "arithmetic":
        # compare/units operands are the option values, in option order
        meta["operands"] = [draft["result"] if d is None else d["value"] for d in ordered]
    return options, meta


def generate_demo(n: int, seed: int, split: str) -> list[Example]:
    """`n` demo questions of one split (see the module docstring); seeded and prefix-stable."""
    if n < 0:
        raise DataError(f"demo task: n must be >= 0, got {n}")
    name = demo_split(split)
    rng = keyed_rng(("demo", seed, name))
    seen: set[str] = set()
    examples: list[Example] = []
    positions: list[int] = []
    attempts = 0
    while len(examples) < n:
        attempts += 1
        if attempts > 100 * n + 10_000:
            raise DataError(
                f"demo task: could not find {n} distinct {name} questions; ask for fewer"
            )
        family = rng.choices(FAMILIES, weights=_FAMILY_WEIGHTS)[0]
        draft = _DRAFTERS[family](rng)
        signature = (
            draft["question"]
            + "|"
            + "|".join(sorted([draft["result_text"]] + [d["text"] for d in draft["distractors"]]))
        )
        if (
            signature in seen
            or key_seed(("demo-split", seed, signature)) % 3 != _SPLIT_BUCKETS[name]
        ):
            continue
        seen.add(signature)
        if not positions:
            positions = rng.sample(range(4), 4)
        position = positions.pop()
        options, meta = _place(draft, position, rng)
        examples.append(
            Example(
                prompt_id=f"demo/{name}/{len(examples) + 1}",
                question=draft["question"],
                options=tuple(options),
                gold=position,
                meta=meta,
            )
        )
    return examples


def _extreme_words(meta: dict[str, Any]) -> tuple[str, str]:
    """(superlative, comparative) for a compare/units item, e.g. ("largest", "smaller")."""
    if meta["family"] == "units":
        return ("longest", "shorter") if meta["operation"] == "max" else ("shortest", "longer")
    return ("largest", "smaller") if meta["operation"] == "max" else ("smallest", "larger")


def _in_cm(text: str) -> str:
    amount, unit = text.split()
    return f"{_num(float(amount) * UNIT_MM[unit] / 10)} cm"


def _with_cm(text: str) -> str:
    """A length with its value in cm beside it ("1.2 m = 120 cm"), or as is when in cm."""
    cm = _in_cm(text)
    return text if cm == text else f"{text} = {cm}"


def _sound_parts(meta: dict[str, Any]) -> tuple[str, list[str]]:
    """The sentence that derives the result, and the sentences about the distractors."""
    gold = meta["gold"]
    ds = meta["distractors"]
    if meta["family"] == "arithmetic":
        a, b = meta["operands"]
        first = f"{a} {meta['operation']} {b} = {meta['result']}, so the answer is {gold}."
        reasons = []
        for d in ds:
            if d["kind"] == "wrong_operation":
                expr = d["why"].split(": ", 1)[1].split(" = ")[0]
                reasons.append(f"{d['text']} = {expr} uses the wrong operation.")
            else:
                reasons.append(f"{d['text']} is {d['why']}.")
        return first, reasons
    best, worse = _extreme_words(meta)
    if meta["family"] == "compare":
        listed = ", ".join(str(v) for v in meta["operands"][:-1])
        first = (
            f"{meta['result_text']} is the {best} of {listed} and {meta['operands'][-1]}, "
            f"so the answer is {gold}."
        )
        than = meta["result_text"]
        said = [d["text"] for d in ds]
    else:
        than = _in_cm(meta["result_text"])
        first = f"{_with_cm(meta['result_text'])} is the {best}, so the answer is {gold}."
        said = [_with_cm(d["text"]) for d in ds]
    # One sentence for all three: three "X is smaller than Y." would read as repetition.
    listed = ", ".join(said[:-1]) + f" and {said[-1]}"
    return first, [f"{listed} are all {worse} than {than}."]


def demo_response(example: Example, defects: Collection[str] = ()) -> tuple[str, str]:
    """(answer letter, explanation) for a demo example: sound, or with the named defects.

    Defects (`DEFECTS`): `wrong_result` answers and argues for a distractor;
    `false_equation` adds a false equation or comparison; `no_numbers` argues without the
    question's numbers; `no_distractors` says nothing about the other options;
    `contradiction` names a second answer; `repetition` repeats a sentence.
    """
    meta = example.meta
    if not meta or meta.get("family") not in FAMILIES:
        raise ValueError(f"{example.prompt_id}: not a demo example (no demo meta)")
    unknown = set(defects) - set(DEFECTS)
    if unknown:
        raise ValueError(f"unknown defects {sorted(unknown)}; known: {', '.join(DEFECTS)}")
    answer = meta["gold"]
    first, reasons = _sound_parts(meta)
    reasons_sound = list(reasons)
    wrong = meta["distractors"][0]
    if "wrong_result" in defects:
        answer = wrong["option"]
        if meta["family"] == "arithmetic":
            a, b = meta["operands"]
            first = f"{a} {meta['operation']} {b} = {wrong['value']}, so the answer is {answer}."
        else:
            best, _ = _extreme_words(meta)
            first = f"{wrong['text']} is the {best}, so the answer is {answer}."
        reasons = [f"{meta['result_text']} is not the right one."]
        if meta["family"] == "arithmetic":
            reasons += reasons_sound[1:]
    if "no_numbers" in defects:
        first = f"The answer is {answer} because it fits the question best."
        reasons = ["The other options are wrong because they do not fit the question."]
    if "false_equation" in defects:
        if meta["family"] == "arithmetic":
            a, b = meta["operands"]
            reasons.append(f"Also, {a} + {b} = {a + b + 3}.")
        else:
            best, worse = _extreme_words(meta)
            reasons.append(f"Also, {meta['result_text']} is {worse} than {wrong['text']}.")
    if "no_distractors" in defects:
        reasons = []
    sentences = [first, *reasons]
    if "contradiction" in defects:
        other = wrong["option"] if answer != wrong["option"] else meta["gold"]
        sentences.append(f"So the correct answer is {other}.")
    if "repetition" in defects:
        sentences += [first, first]
    return answer, " ".join(sentences)
