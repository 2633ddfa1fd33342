"""report.md: the summary of a run as tables a person reads, noise called noise."""

from __future__ import annotations

from typing import Any

from anchor_service.core.types import CATEGORIES, CRITERIA


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _pts(x: float | None) -> str:
    return "-" if x is None else f"{x:+.1f}"


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


def render(summary: dict[str, Any]) -> str:
    out = [f"# Run report: {summary.get('dataset')} (run_seed {summary.get('run_seed')})", ""]
    j = summary.get("judge", {})
    out += [
        f"- alignment judge: {j.get('alignment')}",
        f"- evaluation judge: {j.get('evaluation')}",
        sanity_line("alignment", (j.get("sanity") or {}).get("alignment")),
        sanity_line("evaluation", (j.get("sanity") or {}).get("evaluation")),
        *agreement_lines(summary.get("judge_agreement")),
        "",
    ]
    acc = summary.get("accuracy", {})
    dwl = summary.get("delta_wl", {})
    if acc:
        out += [
            "## Models on the test split",
            "",
            "| model | accuracy % [95% CI] | ΔW-L vs base (pts) [95% CI] | W/T/L | p (sign) | reading |",
            "|---|---|---|---|---|---|",
        ]
        holm = {(r["a"], r["b"]): r for r in summary.get("pairwise", [])}
        for m, a in acc.items():
            acc_s = f"{_pct(a['value'])} [{_pct(a['ci_low'])}, {_pct(a['ci_high'])}] (n={a['n']})"
            d = dwl.get(m)
            if d:
                row = holm.get((m, "base"), d)
                out.append(
                    f"| {m} | {acc_s} | {_pts(d['value'])} [{_pts(d['ci_low'])}, "
                    f"{_pts(d['ci_high'])}] | {d['wins']}/{d['ties']}/{d['losses']} | "
                    f"{d['p_sign']:.3g} | {noise_word(row)} |"
                )
            else:
                out.append(f"| {m} | {acc_s} | (reference) | | | |")
        out.append("")
    pw = summary.get("pairwise", [])
    if pw:
        out += [
            "## Every model against every other (ΔW-L of a vs b, Holm over all rows)",
            "",
            "| a | b | ΔW-L [95% CI] | p_sign | p_holm | reading |",
            "|---|---|---|---|---|---|",
        ]
        for r in pw:
            out.append(
                f"| {r['a']} | {r['b']} | {_pts(r['value'])} [{_pts(r['ci_low'])}, "
                f"{_pts(r['ci_high'])}] | {r['p_sign']:.3g} | {r['p_holm']:.3g} | {noise_word(r)} |"
            )
        out.append("")
    crit = summary.get("criteria", {})
    if crit:
        out += ["## Criteria (mean 0-3 [95% CI])", "", "| model | " + " | ".join(CRITERIA) + " |"]
        out.append("|---" * (len(CRITERIA) + 1) + "|")
        for m, cs in crit.items():
            cells = []
            for c in CRITERIA:
                v = cs.get(c, {})
                cells.append(
                    "-"
                    if v.get("mean") is None
                    else f"{v['mean']:.2f} [{v['ci_low']:.2f}, {v['ci_high']:.2f}]"
                )
            out.append(f"| {m} | " + " | ".join(cells) + " |")
        out.append("")
    cats = summary.get("categories", {})
    out += ["## Pair building", "", "| | " + " | ".join(CATEGORIES) + " |", "|---|---|---|---|"]
    out.append("| prompts | " + " | ".join(str(cats.get(c, 0)) for c in CATEGORIES) + " |")
    out += ["", "| strategy | pairs | lambda | drops | DPO |", "|---|---|---|---|---|"]
    for s, n in summary.get("pairs", {}).items():
        drops = ", ".join(f"{k} {v}" for k, v in summary.get("drops", {}).get(s, {}).items() if v)
        lam = summary.get("lambda", {}).get(s)
        skipped = "skipped (< min_pairs)" if s in summary.get("dpo_skipped", []) else "trained"
        lam_s = "-" if lam is None else f"{lam:.2f}"
        out.append(f"| {s} | {n} | {lam_s} | {drops or 'none'} | {skipped} |")
    out.append("")
    claims = summary.get("claims", {})
    if claims:
        out += ["## The paper's claims", ""]
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
    return "\n".join(out) + "\n"
