"""summary.json from the files of a run directory alone (ARCHITECTURE.md file contract).

Nothing here calls a model: deleting summary.json and rebuilding it gives the same file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from anchor_service.core.types import CATEGORIES, CRITERIA, SCORED, VERDICT_VALUES
from anchor_service.demo.oracle import is_oracle
from anchor_service.evaluation.claims import evaluate_claims
from anchor_service.evaluation.stats import (
    accuracy,
    criterion_means,
    delta_vs,
    pairwise_rows,
    written_both_rows,
)
from anchor_service.faults import kill_point
from anchor_service.report.agreement import agreement_summary
from anchor_service.report.rounds import (
    read_record,
    reported_evals,
    rounds_figure,
    rounds_section,
    rounds_summary,
)
from anchor_service.report.scored import load_eval, score_list
from anchor_service.rundir import RunDir

STAT_SEED_SALT = "summary"


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def eval_models(run: Path, cfg: dict) -> list[str]:
    """Evaluated models in report order: base, sft, then strategies in config order."""
    found = RunDir(run, create=False).evaluated_models()
    order = ["base", "sft", *cfg.get("pairs", {}).get("strategies", [])]
    return [m for m in order if m in found] + sorted(found - set(order))


def _criterion_values(df: pd.DataFrame) -> dict[str, list[int | None]]:
    out = {}
    for c in CRITERIA:
        out[c] = [
            VERDICT_VALUES.get(v) if isinstance(v, str) and st in ("scored", "empty") else None
            for v, st in zip(df[c], df["status"], strict=True)
        ]
    return out


def judge_name(judge_cfg: dict | None) -> str | None:
    if not judge_cfg:
        return None
    if is_oracle(judge_cfg):
        return "oracle"
    return f"{judge_cfg['model']['name']} ({judge_cfg.get('mode', 'auto')})"


def build_summary(run: str | Path) -> dict[str, Any]:
    """The summary of a run directory, computed from its files only."""
    run = Path(run)
    rundir = RunDir(run, create=False)
    cfg = yaml.safe_load(rundir.config.read_text(encoding="utf-8"))
    seed = int(cfg.get("run_seed", 0))
    n_boot = int(cfg.get("evaluation", {}).get("bootstrap", 1000))
    strategies = cfg.get("pairs", {}).get("strategies", [])
    stats = {s: _read_json(rundir.stats(s)) for s in strategies}
    stats = {s: v for s, v in stats.items() if v is not None}
    sanity = _read_json(rundir.sanity) or {}

    categories = dict.fromkeys(CATEGORIES, 0)
    if stats:
        categories.update(next(iter(stats.values()))["prompts"])
    summary: dict[str, Any] = {
        "run_seed": seed,
        "dataset": cfg.get("data", {}).get("source"),
        "judge": {
            "alignment": judge_name(cfg.get("judge")),
            "evaluation": judge_name(cfg.get("eval_judge") or cfg.get("judge")),
            "sanity": {role: sanity.get(role) for role in ("alignment", "evaluation")},
        },
    }
    models = eval_models(run, cfg)
    # Present only where an oracle exists (the demo task) and some judge is an LLM.
    names = {role: summary["judge"][role] for role in ("alignment", "evaluation")}
    agreement = agreement_summary(run, cfg, names, models, seed, n_boot)
    if agreement:
        summary["judge_agreement"] = agreement
    summary |= {
        "dpo_skipped": [s for s, st in stats.items() if st.get("dpo_skipped")],
        "categories": categories,
        "pairs": {s: sum(st["pairs"].values()) for s, st in stats.items()},
        "lambda": {s: st["lambda"] for s, st in stats.items()},
        "drops": {s: st["drops"] for s, st in stats.items()},
    }
    evals = {m: load_eval(run, m) for m in models}
    record = read_record(run)
    if record:  # each strategy is its last accepted round
        evals |= reported_evals(run, record, models)
    if not evals:
        return summary
    ids = evals[models[0]]["prompt_id"].tolist()
    for m, df in evals.items():
        if df["prompt_id"].tolist() != ids:
            raise ValueError(f"{run}: eval files of '{m}' cover other questions than '{models[0]}'")
    correct = {m: [bool(c) for c in df["correct"]] for m, df in evals.items()}
    scores = {m: score_list(df) for m, df in evals.items()}
    summary["accuracy"] = {m: accuracy(c) for m, c in correct.items()}
    if "base" in scores:
        summary["delta_wl"] = {
            m: delta_vs(scores, m, seed, reference="base", n_resamples=n_boot)
            for m in models
            if m != "base"
        }
    summary["pairwise"] = pairwise_rows(scores, seed, n_resamples=n_boot)
    written = {m: (df["status"] == SCORED).tolist() for m, df in evals.items()}
    summary["pairwise_written"] = written_both_rows(scores, written, seed, n_resamples=n_boot)
    summary["criteria"] = {
        m: criterion_means(_criterion_values(df), seed=seed, n_resamples=n_boot)
        for m, df in evals.items()
    }
    summary["claims"] = evaluate_claims(correct, scores, seed, n_resamples=n_boot)
    summary["status"] = {
        m: {s: int((df["status"] == s).sum()) for s in ("scored", "empty", "unscored")}
        | {"unparseable": int((df["parse_status"] != "ok").sum())}
        for m, df in evals.items()
    }
    if record:
        summary["rounds"] = rounds_summary(run, record, cfg, evals, seed, n_boot)
    return summary


def write_summary(run: str | Path) -> dict[str, Any]:
    """Build summary.json, report.md, the figures and report.html of a run directory."""
    from anchor_service.report.figures import write_figures
    from anchor_service.report.html import write_html
    from anchor_service.report.markdown import figures_section, render
    from anchor_service.rundir import write_atomic, write_json_atomic

    rundir = RunDir(run, create=False)
    summary = build_summary(run)
    write_json_atomic(summary, rundir.summary)
    kill_point("report", 1)  # a test hook, inert unless set (faults.py)
    figures = [*write_figures(rundir, summary), *filter(None, [rounds_figure(rundir, summary)])]
    markdown = render(summary) + "\n".join(rounds_section(summary)) + figures_section(figures)
    write_atomic(rundir.report_md, markdown)
    write_html(rundir, markdown, figures)
    return summary
