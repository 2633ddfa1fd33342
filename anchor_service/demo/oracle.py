"""The `oracle` judge: scores demo-task explanations from the facts in each example's `meta`.

It needs no model. It reads the explanation as text, finds the claims it can check, and
compares them with the facts `anchor_service.demo.task` keeps (operands, result, gold letter,
each distractor's value and why it fails). Five rules, one per criterion; each gives a
verdict level 3 (Excellent) to 0 (Unsatisfactory); `score` is the sum (0-15) and
`score_expected` = float(score). The oracle knows the gold answer: unlike the LLM judges it
is a checker of facts, used as the demo's evaluation judge and as ground truth for judge
agreement.

Statuses: an empty explanation (only whitespace) is `empty`: score 0, every verdict
`Unsatisfactory`. An item whose `meta` is not a demo item's (no known `family`) is
`unscored`, with null verdicts and score. Anything else is `scored`: no explanation text
makes the oracle raise (a demo meta with missing fields raises OracleMetaError: a bug).

What the rules read:
- *Quantities*: numbers, optionally with a length unit (mm, cm, m, also spelled out). In a
  units question a length is converted to mm; a bare number there stands for the option whose
  printed amount it is ("130" for "130 cm").
- *Claims*: (1) chains of arithmetic (`+ - * / x`, also plus/minus/times) joined by
  `= < > <= >= !=`, or by `is`/`equals`/`gives`/`makes` when a side has an operator or both
  sides have units ("27 + 15 = 42", "1.2 m = 120 cm", "12 = 27 - 15"); (2) "X is/are [up to
  three words] smaller/larger/shorter/longer/less/more/... than Y" ("not" among the words
  negates; a number word such as "ten" also checks the difference); (3) superlatives "X is
  the largest/smallest/longest/shortest", true when X is the max/min of the option values;
  (4) "X is off by one/ten/N", true when |X - result| = N.
- *Mentions* of an option: its value as a quantity, or its label: a capital letter in the
  option range standing alone ("B", "C)", "(D)", "option A"); a capital "A" before a
  lower-case word is the article unless that word is a verb such as is/was/uses/gives.
- *Sentences* end at `.`, `!`, `?` or `;` followed by a space or the end, or at a line break.

Rules -> criteria:
1. factual_accuracy (rules "states the right result" and "every claim is true"): the result
   is stated when the response's answer (if parsed) is the gold letter and the explanation
   mentions the result. Stated and no false claim: 3; stated and one false claim: 2; stated
   and two or more: 1; not stated and no false claim: 1; not stated and a false claim: 0.
2. relevance ("uses the question's numbers"): the share of the question's numbers
   mentioned (arithmetic: the two operands; compare/units: the four option values).
   All: 3; at least three quarters: 2; some: 1; none: 0.
3. depth_of_argumentation ("says why the other options fail"): a distractor is addressed
   when a sentence mentions it and gives a reason: a comparison word (smaller, larger,
   shorter, longer, less, more, greater, than, ...), "off by", an operation word
   (operation, add, subtract, plus, minus, sum, difference, instead, too) or a symbol
   (= < > + -). "B is wrong." names it but gives no reason. All addressed: 3; at least two
   thirds: 2; some: 1; none: 0.
4. logical_coherence ("free of contradictions"): contradictions counted are (a) the
   explanation names or derives as the answer an option other than the response's answer
   ("answer is C", "C is correct", "27 + 15 = 52" where 52 is option C, "58 is the
   largest"); (b) it names or derives two different options; (c) it derives two different
   values for the question's own operation; (d) it claims both X < Y and Y < X; (e) it calls
   an option both correct and wrong. None: 3, or 2 when the explanation has no claim and no
   reason at all (a bare restatement leaps to its answer); one: 1; two or more: 0.
5. clarity ("free of repetition"): a sentence of three or more words repeated counts once
   per extra copy; a six-word sequence occurring three times is a loop; a word three times
   in a row is a stutter. Two or more repeats, or a loop: 0; one repeat or a stutter: 1;
   fewer than four words, or more than 120: 2 at most; otherwise 3.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from anchor_service.core.parsing import label_at
from anchor_service.core.types import (
    CRITERIA,
    EMPTY,
    LETTERS,
    SCORED,
    UNSCORED,
    VALUE_VERDICTS,
    Judgement,
)
from anchor_service.demo.task import FAMILIES, UNIT_MM
from anchor_service.scoring.item import JudgeItem

log = logging.getLogger(__name__)

MODE = "oracle"


def is_oracle(judge: Any) -> bool:
    """The one rule for "is this judge the demo oracle?": its mode or its model's engine is
    `oracle`. `judge` is a JudgeConfig or its dict form (a run's config.yaml); None is not."""
    if judge is None:
        return False
    if isinstance(judge, Mapping):
        model = judge.get("model") or {}
        return judge.get("mode") == MODE or model.get("engine") == MODE
    return judge.mode == MODE or judge.model.engine == MODE


def oracle_applies(examples: Iterable[Any]) -> bool:
    """True when the examples carry the demo task's facts, so the oracle can score them."""
    return any(isinstance(ex.meta, dict) and ex.meta.get("family") in FAMILIES for ex in examples)


_UNIT = r"(?:millimet(?:er|re)s?|centimet(?:er|re)s?|met(?:er|re)s?|mm|cm|m)(?![A-Za-z])"
_QTY = rf"(?<![\w.])(\d+(?:\.\d+)?)(?:\s*({_UNIT}))?"
_TOKEN = re.compile(
    rf"(?P<num>(?<![\w.])\d+(?:\.\d+)?)(?:\s*(?P<unit>{_UNIT}))?"
    r"|(?P<op>[+\-\u2212*/\u00d7\u00f7]|\b(?:plus|minus|times|x)\b)"
    r"|(?P<rel><=|>=|!=|[=<>\u2260\u2264\u2265]"
    r"|\bis equal to\b|\bequals\b|\bis\b|\bgives\b|\bmakes\b)",
    re.IGNORECASE,
)
# A chain: expression (relation expression)+, over one symbol per token (N, O, R; | = a gap).
_CHAIN = re.compile(r"N(?:ON)*(?:RN(?:ON)*)+")
_WORD_RELATIONS = {"is", "is equal to", "equals", "gives", "makes"}
_COMPARATIVES = {
    **dict.fromkeys(("greater", "larger", "bigger", "more", "longer", "higher"), ">"),
    **dict.fromkeys(("smaller", "less", "shorter", "lower", "fewer"), "<"),
}
_NUMBER_WORDS = {
    w: i for i, w in enumerate("zero one two three four five six seven eight nine ten".split())
}
_COMPARISON = re.compile(
    rf"{_QTY}\s+(?:is|are|was|were)\s+((?:[A-Za-z]+\s+){{0,3}}?)"
    rf"({'|'.join(_COMPARATIVES)})\s+than\s+{_QTY}",
    re.IGNORECASE,
)
_SUPERLATIVES = {
    **dict.fromkeys(("largest", "biggest", "greatest", "highest", "longest"), "max"),
    **dict.fromkeys(("smallest", "lowest", "shortest", "least"), "min"),
}
_SUPERLATIVE = re.compile(
    rf"{_QTY}\s+(?:is|was)\s+(?:the\s+)?({'|'.join(_SUPERLATIVES)})\b", re.IGNORECASE
)
_OFF_BY = re.compile(
    rf"{_QTY}\s+(?:is|was)\s+(?:[A-Za-z]+\s+)?off\s+by\s+({'|'.join(_NUMBER_WORDS)}|\d+)\b",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"[.!?;](?=\s|$)|\n")
_REASON = re.compile(
    r"\b(?:off by|than|smaller|larger|greater|bigger|less|more|shorter|longer|lower|higher|"
    r"operation|add|adds|adding|added|subtract|subtracts|subtracting|subtracted|plus|minus|"
    r"sum|difference|instead|too)\b|[=<>+\u2212\u2260\u2264\u2265]|(?<=\d)\s*-\s*(?=\d)",
    re.IGNORECASE,
)
# After a capital "A", a verb makes it a label ("A is off by one"), else it is the article.
_VERB_AFTER_LABEL = re.compile(
    r"\s+(?:is|was|does|has|gives|uses|adds|subtracts|equals|would|can|cannot|comes|"
    r"isn't|doesn't|misses|means)\b"
)
_LABEL_LEAD = re.compile(r"(?:option|choice)\s+\(?$|\($", re.IGNORECASE)
_ANSWER_IS = re.compile(
    r"\banswer\s+(?:is|would be|must be|should be|:)\s*(?:option\s+|choice\s+)?\(?",
    re.IGNORECASE,
)
_OPTION_REF = r"(?<![A-Za-z])(?:(?i:option|choice)\s+)?\(?([A-J])\)?"
_CALLED_CORRECT = re.compile(rf"{_OPTION_REF}\s+(?i:is)\s+(?i:the\s+)?(?i:correct|right)\b")
_CALLED_WRONG = re.compile(
    rf"{_OPTION_REF}\s+(?i:is)\s+(?i:wrong|incorrect|not\s+(?:the\s+)?(?:correct|right|answer))"
)
_VALUE_CORRECT = re.compile(rf"{_QTY}\s+is\s+(?:the\s+)?(?:correct|right)\b", re.IGNORECASE)
_VALUE_WRONG = re.compile(
    rf"{_QTY}\s+is\s+(?:wrong|incorrect|not\s+(?:the\s+)?(?:correct|right|answer))",
    re.IGNORECASE,
)
_STUTTER = re.compile(r"\b(\w+)(?:\s+\1\b){2,}", re.IGNORECASE)


def _unit_mm(unit: str | None) -> int | None:
    if not unit:
        return None
    u = unit.lower()
    if u.startswith("milli") or u == "mm":
        return UNIT_MM["mm"]
    if u.startswith("centi") or u == "cm":
        return UNIT_MM["cm"]
    return UNIT_MM["m"]


def _close(x: float, y: float) -> bool:
    return math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-9)


class OracleMetaError(ValueError):
    """An item's meta names a demo family but lacks the facts the oracle checks."""


@dataclass
class _Facts:
    """What the rules compare against, taken from a demo example's meta."""

    family: str
    operation: str
    operands: list[float]
    result: float
    gold: int
    option_values: list[float]
    printed: dict[float, float]  # units family: printed amount -> value in mm

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> _Facts:
        distractors = meta["distractors"]
        n = len(distractors) + 1
        gold = LETTERS.index(meta["gold"])
        values: list[float] = [0.0] * n
        texts: list[str] = [""] * n
        values[gold], texts[gold] = float(meta["result"]), str(meta["result_text"])
        for d in distractors:
            i = LETTERS.index(d["option"])
            values[i], texts[i] = float(d["value"]), str(d["text"])
        printed = {}
        if meta["family"] == "units":
            printed = {float(t.split()[0]): v for t, v in zip(texts, values, strict=True)}
        return cls(
            family=meta["family"],
            operation=meta["operation"],
            operands=[float(x) for x in meta["operands"]],
            result=float(meta["result"]),
            gold=gold,
            option_values=values,
            printed=printed,
        )

    def value(self, amount: str, unit: str | None) -> float | None:
        """A quantity's value in the question's terms (mm for units), or None if unknown."""
        x = float(amount)
        if self.family != "units":
            return x
        factor = _unit_mm(unit)
        if factor is not None:
            return x * factor
        return self.printed.get(x)

    def option_of(self, value: float | None) -> int | None:
        if value is None:
            return None
        hits = [i for i, v in enumerate(self.option_values) if _close(v, value)]
        return hits[0] if len(hits) == 1 else None

    def mentioned(self, value: float, values: list[float]) -> bool:
        return any(_close(value, v) for v in values)


@dataclass
class _Claim:
    text: str
    true: bool


def _evaluate(terms: list[tuple[str, Any]]) -> float | None:
    """Value of [('n', x), ('o', op), ('n', y), ...] with * and / before + and -."""
    values: list[float] = [terms[0][1]]
    ops: list[str] = []
    for i in range(1, len(terms), 2):
        op, x = terms[i][1], terms[i + 1][1]
        if op in "*/":
            if op == "/" and x == 0:
                return None
            values[-1] = values[-1] * x if op == "*" else values[-1] / x
        else:
            ops.append(op)
            values.append(x)
    total = values[0]
    for op, x in zip(ops, values[1:], strict=True):
        total = total + x if op == "+" else total - x
    return total


def _op_symbol(text: str) -> str:
    t = text.lower()
    if t in ("+", "plus"):
        return "+"
    if t in ("-", "\u2212", "minus"):
        return "-"
    if t in ("*", "\u00d7", "x", "times"):
        return "*"
    return "/"


def _relation_holds(rel: str, x: float, y: float) -> bool:
    rel = rel.lower()
    if rel in _WORD_RELATIONS or rel == "=":
        return _close(x, y)
    if rel in ("!=", "\u2260"):
        return not _close(x, y)
    if rel == "<":
        return x < y and not _close(x, y)
    if rel == ">":
        return x > y and not _close(x, y)
    if rel in ("<=", "\u2264"):
        return x < y or _close(x, y)
    return x > y or _close(x, y)


@dataclass
class _Reading:
    """Everything the rules need from one explanation."""

    claims: list[_Claim]
    mentions: list[float]
    computed_values: list[float]  # values derived for the question's own operation
    derived_options: set[int]  # options the explanation derives or names as the answer
    less_than: set[tuple[float, float]]
    called_wrong: set[int]


def _read(text: str, facts: _Facts) -> _Reading:
    claims: list[_Claim] = []
    computed: list[float] = []
    less_than: set[tuple[float, float]] = set()
    tokens = list(_TOKEN.finditer(text))
    symbols = []
    for i, tok in enumerate(tokens):
        if i and text[tokens[i - 1].end() : tok.start()].strip():
            symbols.append("|")
        symbols.append("N" if tok.group("num") else "O" if tok.group("op") else "R")
    # map symbol positions back to token indices (gaps have none)
    index_of = [i for i, s in enumerate(symbols) if s != "|"]
    token_at = {pos: k for k, pos in enumerate(index_of)}
    for m in _CHAIN.finditer("".join(symbols)):
        chain = [tokens[token_at[p]] for p in range(m.start(), m.end())]
        _chain_claims(text, chain, facts, claims, computed, less_than)

    for m in _COMPARISON.finditer(text):
        x, y = facts.value(m.group(1), m.group(2)), facts.value(m.group(5), m.group(6))
        if x is None or y is None:
            continue
        filler = m.group(3).lower().split()
        sign = _COMPARATIVES[m.group(4).lower()]
        holds = x < y if sign == "<" else x > y
        if "not" in filler:
            holds = not holds
        else:
            less_than.add((x, y) if sign == "<" else (y, x))
        amounts = [_NUMBER_WORDS[w] for w in filler if w in _NUMBER_WORDS]
        if amounts and holds:
            holds = _close(abs(x - y), amounts[0])
        claims.append(_Claim(m.group(0), holds))

    derived: set[int] = set()
    for m in _SUPERLATIVE.finditer(text):
        x = facts.value(m.group(1), m.group(2))
        if x is None:
            continue
        kind = _SUPERLATIVES[m.group(3).lower()]
        extreme = max(facts.option_values) if kind == "max" else min(facts.option_values)
        claims.append(_Claim(m.group(0), _close(x, extreme)))
        if facts.family != "arithmetic" and kind == facts.operation:
            option = facts.option_of(x)
            if option is not None:
                derived.add(option)
    if facts.family == "arithmetic":
        for m in _OFF_BY.finditer(text):
            x = facts.value(m.group(1), m.group(2))
            word = m.group(3).lower()
            k = _NUMBER_WORDS[word] if word in _NUMBER_WORDS else int(word)
            if x is not None:
                claims.append(_Claim(m.group(0), _close(abs(x - facts.result), k)))
        for v in computed:
            option = facts.option_of(v)
            if option is not None:
                derived.add(option)

    mentions = []
    for m in _TOKEN.finditer(text):
        if m.group("num"):
            v = facts.value(m.group("num"), m.group("unit"))
            if v is not None:
                mentions.append(v)
    named, called_wrong = _named_options(text, facts)
    return _Reading(claims, mentions, computed, derived | named, less_than, called_wrong)


def _chain_claims(
    text: str,
    chain: list[re.Match[str]],
    facts: _Facts,
    claims: list[_Claim],
    computed: list[float],
    less_than: set[tuple[float, float]],
) -> None:
    """Check every relation of one chain (`27 + 15 = 42`, `1.2 m = 120 cm = 1200 mm`)."""
    units = [t.group("unit") for t in chain if t.group("num") and t.group("unit")]
    inherited = units[0] if units else None
    # expressions: lists of ('n', value) / ('o', op); relations between them
    exprs: list[list[tuple[str, Any]]] = [[]]
    has_unit: list[bool] = [False]
    rels: list[str] = []
    for tok in chain:
        if tok.group("num"):
            unit = tok.group("unit") or (inherited if facts.family == "units" else None)
            if facts.family == "units" and unit:
                value: float | None = float(tok.group("num")) * (_unit_mm(unit) or 1)
            else:
                value = facts.value(tok.group("num"), unit)
            if value is None:
                return
            exprs[-1].append(("n", value))
            has_unit[-1] = has_unit[-1] or bool(tok.group("unit"))
        elif tok.group("op"):
            exprs[-1].append(("o", _op_symbol(tok.group("op"))))
        else:
            rels.append(" ".join(tok.group("rel").lower().split()))
            exprs.append([])
            has_unit.append(False)
    values = [_evaluate(e) for e in exprs]
    for i, rel in enumerate(rels):
        left, right = exprs[i], exprs[i + 1]
        has_op = len(left) > 1 or len(right) > 1
        if rel in _WORD_RELATIONS and not has_op and not (has_unit[i] and has_unit[i + 1]):
            continue  # "the sum of 27 and 15 is 42" must not read as "15 = 42"
        x, y = values[i], values[i + 1]
        if x is None or y is None:
            continue
        snippet = text[chain[0].start() : chain[-1].end()]
        claims.append(_Claim(snippet, _relation_holds(rel, x, y)))
        if rel == "<":
            less_than.add((x, y))
        elif rel == ">":
            less_than.add((y, x))
        for side, other in ((left, y), (right, x)):
            if _is_question_operation(side, facts) and len(right if side is left else left) == 1:
                computed.append(other)


def _is_question_operation(expr: list[tuple[str, Any]], facts: _Facts) -> bool:
    """Whether an expression is the arithmetic question itself (27 + 15, or 15 + 27)."""
    if facts.family != "arithmetic" or len(expr) != 3 or expr[1][1] != facts.operation:
        return False
    a, b = expr[0][1], expr[2][1]
    x, y = facts.operands
    if facts.operation == "+":
        return (_close(a, x) and _close(b, y)) or (_close(a, y) and _close(b, x))
    return _close(a, x) and _close(b, y)


def _label_positions(sentence: str, n_options: int) -> set[int]:
    """Options named by label in a sentence ("B)", "(C)", "option D", "C is", "A uses")."""
    found = set()
    for m in re.finditer(r"(?<![A-Za-z])[A-J](?![A-Za-z'])", sentence):
        letter = m.group(0)
        if LETTERS.index(letter) >= n_options:
            continue
        article = letter == "A" and re.match(r"\s+[a-z]", sentence[m.end() :])
        if (
            not article
            or _VERB_AFTER_LABEL.match(sentence, m.end())
            or _LABEL_LEAD.search(sentence[: m.start()])
        ):
            found.add(LETTERS.index(letter))
    return found


def _named_options(text: str, facts: _Facts) -> tuple[set[int], set[int]]:
    """Options the text calls the answer (or correct), and options it calls wrong."""
    n = len(facts.option_values)
    named: set[int] = set()
    for m in _ANSWER_IS.finditer(text):
        letter = label_at(text, m.end(), n)
        if letter:
            named.add(LETTERS.index(letter))
            continue
        q = re.match(_QTY, text[m.end() :])
        if q:
            option = facts.option_of(facts.value(q.group(1), q.group(2)))
            if option is not None:
                named.add(option)
    named |= _called(text, facts, n, _CALLED_CORRECT, _VALUE_CORRECT)
    return named, _called(text, facts, n, _CALLED_WRONG, _VALUE_WRONG)


def _called(
    text: str, facts: _Facts, n: int, by_label: re.Pattern, by_value: re.Pattern
) -> set[int]:
    """Options the text calls correct (or wrong): by their label, or by their value."""
    found = {LETTERS.index(m.group(1)) for m in by_label.finditer(text)}
    found = {i for i in found if i < n}
    for m in by_value.finditer(text):
        option = facts.option_of(facts.value(m.group(1), m.group(2)))
        if option is not None:
            found.add(option)
    return found


def _sentences(text: str) -> list[str]:
    parts, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        parts.append(text[start : m.end()])
        start = m.end()
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def _factual(item_answer: int | None, reading: _Reading, facts: _Facts, notes: dict) -> int:
    right_answer = item_answer is None or item_answer == facts.gold
    stated = right_answer and facts.mentioned(facts.result, reading.mentions)
    false = [c.text for c in reading.claims if not c.true]
    notes["result_stated"] = stated
    notes["claims"] = len(reading.claims)
    notes["false_claims"] = false
    if stated:
        return 3 if not false else 2 if len(false) == 1 else 1
    return 1 if not false else 0


def _relevance(reading: _Reading, facts: _Facts, notes: dict) -> int:
    used = sum(facts.mentioned(x, reading.mentions) for x in facts.operands)
    notes["numbers_used"] = f"{used}/{len(facts.operands)}"
    share = used / len(facts.operands)
    return 3 if share >= 1 else 2 if share >= 0.75 else 1 if share > 0 else 0


def _depth(text: str, facts: _Facts, notes: dict) -> int:
    n = len(facts.option_values)
    distractors = [i for i in range(n) if i != facts.gold]
    addressed = set()
    for sentence in _sentences(text):
        if not _REASON.search(sentence):
            continue
        labels = _label_positions(sentence, n)
        values = [
            v
            for m in _TOKEN.finditer(sentence)
            if m.group("num") and (v := facts.value(m.group("num"), m.group("unit"))) is not None
        ]
        for i in distractors:
            if i in labels or facts.mentioned(facts.option_values[i], values):
                addressed.add(i)
    notes["distractors_addressed"] = f"{len(addressed)}/{len(distractors)}"
    share = len(addressed) / len(distractors)
    return 3 if share >= 1 else 2 if share >= 2 / 3 else 1 if share > 0 else 0


def _coherence(
    text: str, item_answer: int | None, reading: _Reading, facts: _Facts, notes: dict
) -> int:
    found = []
    others = {i for i in reading.derived_options if i != item_answer}
    if item_answer is not None and others:
        found.append(f"answers {LETTERS[item_answer]} but argues for {_letters(others)}")
    if len(reading.derived_options) >= 2:
        found.append(f"names or derives several answers: {_letters(reading.derived_options)}")
    distinct = []
    for v in reading.computed_values:
        if not any(_close(v, w) for w in distinct):
            distinct.append(v)
    if len(distinct) >= 2:
        found.append(f"derives the question's result as {', '.join(f'{v:g}' for v in distinct)}")
    for x, y in reading.less_than:
        if x < y and (y, x) in reading.less_than:
            found.append(f"claims both {x:g} < {y:g} and {y:g} < {x:g}")
    both = (reading.derived_options & reading.called_wrong) | (
        {item_answer} & reading.called_wrong if item_answer is not None else set()
    )
    if both:
        found.append(f"calls {_letters(both)} both correct and wrong")
    notes["contradictions"] = found
    if found:
        return 1 if len(found) == 1 else 0
    has_reason = bool(reading.claims) or bool(_REASON.search(text))
    return 3 if has_reason else 2


def _letters(options: set[int]) -> str:
    return ", ".join(LETTERS[i] for i in sorted(options))


def _clarity(text: str, notes: dict) -> int:
    normalised = [
        " ".join(re.sub(r"[^\w\s.]", " ", s.casefold()).split()).rstrip(".")
        for s in _sentences(text)
    ]
    long_ones = [s for s in normalised if len(s.split()) >= 3]
    repeats = len(long_ones) - len(set(long_ones))
    words = re.findall(r"\w+(?:\.\w+)?", text.casefold())
    grams: dict[tuple[str, ...], int] = {}
    for i in range(len(words) - 5):
        key = tuple(words[i : i + 6])
        grams[key] = grams.get(key, 0) + 1
    loop = any(c >= 3 for c in grams.values())
    stutter = bool(_STUTTER.search(text))
    notes["repetition"] = {"repeated_sentences": repeats, "loop": loop, "stutter": stutter}
    if loop or repeats >= 2:
        return 0
    if repeats == 1 or stutter:
        return 1
    if len(words) < 4 or len(words) > 120:
        return 2
    return 3


class OracleJudge:
    """Scores demo explanations by the five rules of this module's docstring."""

    judge_id = "oracle"
    mode = MODE

    def score(self, items: list[JudgeItem]) -> list[Judgement]:
        """One Judgement per item, in order (`empty`, `unscored` or `scored`)."""
        return [self.score_one(item) for item in items]

    def score_one(self, item: JudgeItem) -> Judgement:
        """The Judgement of one item."""
        text = item.explanation if isinstance(item.explanation, str) else ""
        if not text.strip():
            verdicts = {c: VALUE_VERDICTS[0] for c in CRITERIA}
            return Judgement(EMPTY, verdicts, 0, 0.0, MODE, self.judge_id)
        meta = item.meta
        if not isinstance(meta, dict) or meta.get("family") not in FAMILIES:
            return Judgement(
                UNSCORED, None, None, None, MODE, self.judge_id, {"reason": "no demo meta"}
            )
        try:
            facts = _Facts.from_meta(meta)
        except (KeyError, ValueError, TypeError, IndexError, AttributeError) as exc:
            raise OracleMetaError(
                f"demo meta of family {meta.get('family')!r} is malformed ({exc!r}); the oracle "
                "needs the fields written by anchor_service.demo.task.generate_demo"
            ) from exc
        answer = _answer_index(item.answer, len(facts.option_values))
        reading = _read(text, facts)
        notes: dict[str, Any] = {}
        levels = {
            "factual_accuracy": _factual(answer, reading, facts, notes),
            "relevance": _relevance(reading, facts, notes),
            "depth_of_argumentation": _depth(text, facts, notes),
            "logical_coherence": _coherence(text, answer, reading, facts, notes),
            "clarity": _clarity(text, notes),
        }
        verdicts = {c: VALUE_VERDICTS[levels[c]] for c in CRITERIA}
        score = sum(levels.values())
        return Judgement(SCORED, verdicts, score, float(score), MODE, self.judge_id, notes)


def _answer_index(answer: str | None, n_options: int) -> int | None:
    if not isinstance(answer, str):
        return None
    letter = answer.strip().strip("()").upper()
    if len(letter) != 1 or letter not in LETTERS[:n_options]:
        return None
    return LETTERS.index(letter)
