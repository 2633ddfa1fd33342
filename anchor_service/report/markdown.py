"""report.md: the summary of a run as tables a person reads, noise called noise."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from anchor_service.core.types import CATEGORIES, CRITERIA


def _table_line(cells: list[str]) -> str:
    # An empty cell stays "| |", as a person would type it.
    return "|" + "|".join(f" {c} " if c else " " for c in cells) + "|"


def table(header: list[str], rows: Iterable[list[str]]) -> list[str]:
    """A Markdown table's lines: header, separator, one line per row, then a blank line."""
    return [_table_line(header), "|---" * len(header) + "|", *map(_table_line, rows), ""]


def section(title: str, header: list[str], rows: Iterable[list[str]]) -> list[str]:
    """A `## title` heading and its table."""
    return [f"## {title}", "", *table(header, rows)]


def figures_section(figures: list[Path]) -> str:
    """The report.md section that shows the figures (figures/ beside report.md); "" if none."""
    if not figures:
        return ""
    return "\n## Figures\n\n" + "".join(f"![{p.stem}](figures/{p.name})\n\n" for p in figures)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _pts(x: float | None) -> str:
    return "-" if x is None else f"{x:+.1f}"


def _pts_ci(row: dict) -> str:
    return f"{_pts(row['value'])} [{_pts(row['ci_low'])}, {_pts(row['ci_high'])}]"


def sanity_line(role: str, s: dict | None) -> str:
    if not s:
        return f"- {role} judge sanity: not measured"
    ok = s["passed"] >= 8
    verdict = "reliable enough" if ok else "below 8/10: results are a pipeline check, not evidence"
    return f"- {role} judge sanity: {s['passed']}/{s['total']} ({verdict})"


def _ci(entry: dict, fmt: str) -> str:
    if entry.get("value") is None:
        return "undefined"
    ci = ""
    if entry.get("ci_low") is not None:
        ci = f" [{entry['ci_low']:{fmt}}, {entry['ci_high']:{fmt}}]"
    return f"{entry['value']:{fmt}}{ci}"


def agreement_lines(agreement: dict | None) -> list[str]:
    """One line per LLM judge: its agreement with the demo oracle, with 95% CIs."""
    out = []
    for judge, a in (agreement or {}).items():
        pw, within = a["pairwise"], a["pairwise_within_question"]
        out.append(
            f"- {judge} ({' and '.join(a['roles'])} judge) against the oracle, on {a['n']} "
            f"responses to {a['questions']} questions: Spearman {_ci(a['spearman'], '+.2f')}; "
            f"pairwise agreement {_ci(pw, '.0%')} of {pw['pairs']} pairs the oracle orders "
            f"({pw['ties']} tied by the judge); within a question {_ci(within, '.0%')} of "
            f"{within['pairs']} pairs"
        )
    return out


def noise_word(row: dict) -> str:
    """How to read a Delta W-L row: significant (Holm), CI excludes 0 only, or within noise."""
    if row.get("significant"):
        return "significant"
    lo, hi = row.get("ci_low"), row.get("ci_high")
    if lo is not None and hi is not None and (lo > 0 or hi < 0):
        return "CI excludes 0, not significant after Holm"
    return "within noise"


def _criterion_cell(v: dict) -> str:
    if v.get("mean") is None:
        return "-"
    return f"{v['mean']:.2f} [{v['ci_low']:.2f}, {v['ci_high']:.2f}]"


def render(summary: dict[str, Any]) -> str:
    """report.md of a run, from its summary.json."""
    out = [f"# Run report: {summary.get('dataset')} (run_seed {summary.get('run_seed')})", ""]
    for part in (
        _judges_section,
        _models_section,
        _pairwise_section,
        _written_section,
        _criteria_section,
        _pairs_section,
        _claims_section,
    ):
        out += part(summary)
    return "\n".join(out) + "\n"


def _judges_section(summary: dict[str, Any]) -> list[str]:
    j = summary.get("judge", {})
    return [
        f"- alignment judge: {j.get('alignment')}",
        f"- evaluation judge: {j.get('evaluation')}",
        sanity_line("alignment", (j.get("sanity") or {}).get("alignment")),
        sanity_line("evaluation", (j.get("sanity") or {}).get("evaluation")),
        *agreement_lines(summary.get("judge_agreement")),
        "",
    ]


def _models_section(summary: dict[str, Any]) -> list[str]:
    acc = summary.get("accuracy", {})
    dwl = summary.get("delta_wl", {})
    if not acc:
        return []
    holm = {(r["a"], r["b"]): r for r in summary.get("pairwise", [])}
    rows = []
    for m, a in acc.items():
        acc_s = f"{_pct(a['value'])} [{_pct(a['ci_low'])}, {_pct(a['ci_high'])}] (n={a['n']})"
        d = dwl.get(m)
        if not d:
            rows.append([m, acc_s, "(reference)", "", "", ""])
            continue
        rows.append(
            [
                m,
                acc_s,
                _pts_ci(d),
                f"{d['wins']}/{d['ties']}/{d['losses']}",
                f"{d['p_sign']:.3g}",
                noise_word(holm.get((m, "base"), d)),
            ]
        )
    header = [
        "model",
        "accuracy % [95% CI]",
        "ΔW-L vs base (pts) [95% CI]",
        "W/T/L",
        "p (sign)",
        "reading",
    ]
    return section("Models on the test split", header, rows)


def _pairwise_section(summary: dict[str, Any]) -> list[str]:
    pw = summary.get("pairwise", [])
    if not pw:
        return []
    rows = (
        [r["a"], r["b"], _pts_ci(r), f"{r['p_sign']:.3g}", f"{r['p_holm']:.3g}", noise_word(r)]
        for r in pw
    )
    return section(
        "Every model against every other (ΔW-L of a vs b, Holm over all rows)",
        ["a", "b", "ΔW-L [95% CI]", "p_sign", "p_holm", "reading"],
        rows,
    )


def _written_section(summary: dict[str, Any]) -> list[str]:
    pw = summary.get("pairwise_written", [])
    if not pw:
        return []
    status = summary.get("status", {})
    written = ", ".join(
        f"{m} {s.get('scored', 0)} written / {s.get('empty', 0)} empty" for m, s in status.items()
    )
    rows = (
        [r["a"], r["b"], str(r["n"]), "-", "-", "-", "no question"]
        if not r["n"]
        else [
            r["a"],
            r["b"],
            str(r["n"]),
            _pts_ci(r),
            f"{r['p_sign']:.3g}",
            f"{r['p_holm']:.3g}",
            noise_word(r),
        ]
        for r in pw
    )
    # An empty explanation scores 0, so the full-set rows mix "writes one" with "writes a better
    # one"; this table is the second part alone.
    return [
        "## Where both wrote an explanation (ΔW-L of a vs b, Holm over these rows)",
        "",
        *([f"Explanations per model: {written}.", ""] if written else []),
        *table(["a", "b", "n", "ΔW-L [95% CI]", "p_sign", "p_holm", "reading"], rows),
    ]


def _criteria_section(summary: dict[str, Any]) -> list[str]:
    crit = summary.get("criteria", {})
    if not crit:
        return []
    rows = ([m, *(_criterion_cell(cs.get(c, {})) for c in CRITERIA)] for m, cs in crit.items())
    return section("Criteria (mean 0-3 [95% CI])", ["model", *CRITERIA], rows)


def _pairs_section(summary: dict[str, Any]) -> list[str]:
    cats = summary.get("categories", {})
    out = ["## Pair building", ""]
    out += table(["", *CATEGORIES], [["prompts", *(str(cats.get(c, 0)) for c in CATEGORIES)]])
    rows = []
    for s, n in summary.get("pairs", {}).items():
        drops = ", ".join(f"{k} {v}" for k, v in summary.get("drops", {}).get(s, {}).items() if v)
        lam = summary.get("lambda", {}).get(s)
        skipped = "skipped (< min_pairs)" if s in summary.get("dpo_skipped", []) else "trained"
        rows.append([s, str(n), "-" if lam is None else f"{lam:.2f}", drops or "none", skipped])
    return out + table(["strategy", "pairs", "lambda", "drops", "DPO"], rows)


def _claims_section(summary: dict[str, Any]) -> list[str]:
    claims = summary.get("claims", {})
    if not claims:
        return []
    out = ["## The paper's claims", ""]
    for name, c in claims.items():
        out.append(
            f"- **{name}**: {c['verdict']}" + (f" ({c['reason']})" if c.get("reason") else "")
        )
        for cond in c.get("conditions", []):
            out.append(
                f"  - {cond['what']}: {cond['value']:+.2f} [{cond['ci_low']:+.2f}, "
                f"{cond['ci_high']:+.2f}]"
                if cond.get("value") is not None
                else f"  - {cond['what']}: undefined"
            )
    out.append("")
    return out
