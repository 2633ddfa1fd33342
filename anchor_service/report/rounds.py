"""The rounds in summary.json, report.md and a figure (METHOD.md "Rounds"), from the files.

`rounds/rounds.json` (written by recipe/rounds.py) says which rounds trained a model, the
stop-rule decisions and the round reported for each strategy; everything else is recomputed
from the rounds' own files (stats-*.json, eval/), as for round 1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from anchor_service.core.types import CATEGORIES
from anchor_service.evaluation.rounds import round_label
from anchor_service.evaluation.stats import accuracy, delta_vs
from anchor_service.report.figures import pyplot, save_figure
from anchor_service.report.markdown import table
from anchor_service.report.scored import load_eval, score_list
from anchor_service.rundir import RunDir


def _home(rundir: RunDir, strategy: str, r: int) -> RunDir:
    return rundir if r == 1 else rundir.round_dir(r, strategy)


def read_record(run: Path) -> dict[str, Any] | None:
    path = RunDir(run, create=False).rounds_record
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def reported_evals(run: Path, record: dict[str, Any], models: list[str]) -> dict[str, pd.DataFrame]:
    """The test evaluation of each strategy's reported round, where that round is >= 2 (those
    replace round 1's in every model figure of summary.json)."""
    rundir = RunDir(run, create=False)
    out = {}
    for s, chain in record["strategies"].items():
        home = _home(rundir, s, chain["reported_round"])
        if s in models and home is not rundir and home.eval_answers(s).is_file():
            out[s] = load_eval(home.root, s)
    return out


def _round_entry(
    home: RunDir, s: str, r: int, chain: dict[str, Any], decisions: dict[int, dict]
) -> dict[str, Any]:
    stats = json.loads(home.stats(s).read_text(encoding="utf-8"))
    return {
        "round": r,
        "accepted": r <= chain["reported_round"],
        "categories": dict.fromkeys(CATEGORIES, 0) | stats["prompts"],
        "pairs": sum(stats["pairs"].values()),
        "lambda": stats["lambda"],
        "validation": decisions.get(r),
    }


def rounds_summary(
    run: Path,
    record: dict[str, Any],
    cfg: dict[str, Any],
    evals: dict[str, pd.DataFrame],
    seed: int,
    n_boot: int,
) -> dict[str, Any]:
    """summary.json's `rounds`: per strategy, every trained round's pair building, test
    accuracy, Delta W-L against base and against the previous round (round 0: sft), and the
    stop rule's figures on the validation split (docs/RUNDIR.md)."""
    rundir = RunDir(run, create=False)
    rc = cfg.get("rounds", {})
    out: dict[str, Any] = {
        "k": record["k"],
        "init": record["init"],
        "stop_rule": {
            "on": record["stop"],
            **{k: rc.get(k) for k in ("min_delta_ci_low", "max_accuracy_drop", "validation_size")},
        },
        "strategies": {},
    }
    base = score_list(evals["base"]) if "base" in evals else None
    for s, chain in record["strategies"].items():
        decisions = {d["round"]: d for d in chain["decisions"]}
        previous = evals.get("sft")
        rows = []
        for r in chain["trained_rounds"]:
            home = _home(rundir, s, r)
            entry = _round_entry(home, s, r, chain, decisions)
            if home.eval_answers(s).is_file():
                df = load_eval(home.root, s)
                entry["accuracy"] = accuracy([bool(c) for c in df["correct"]])
                cur = score_list(df)
                if base is not None:
                    entry["delta_wl_vs_base"] = delta_vs(
                        {"base": base, s: cur}, s, seed, "base", n_boot
                    )
                if previous is not None:
                    a, b = round_label(s, r), round_label(s, r - 1)
                    scores = {a: cur, b: score_list(previous)}
                    entry["delta_wl_vs_previous"] = delta_vs(scores, a, seed, b, n_boot)
                previous = df
            rows.append(entry)
        out["strategies"][s] = {
            "reported_round": chain["reported_round"],
            "trained_rounds": chain["trained_rounds"],
            "stopped": chain["stopped"],
            "per_round": rows,
        }
    return out


def _pts_ci(d: dict | None) -> str:
    if not d:
        return "-"
    return f"{d['value']:+.1f} [{d['ci_low']:+.1f}, {d['ci_high']:+.1f}]"


def _validation_cell(v: dict | None) -> str:
    if not v:
        return "-"
    verdict = "passed" if v["passed"] else "failed"
    return (
        f"{verdict}: ΔW-L {_pts_ci(v['delta_wl_vs_previous'])}, accuracy "
        f"{v['accuracy_change_pts']:+.1f} pts (n={v['n']})"
    )


def rounds_section(summary: dict[str, Any]) -> list[str]:
    """report.md's rounds section: one table per strategy ([] without rounds)."""
    rounds = summary.get("rounds")
    if not rounds:
        return []
    rule = rounds["stop_rule"]
    out = [
        f"## Rounds (k = {rounds['k']}, DPO init `{rounds['init']}`)",
        "",
        (
            f"- stop rule: on, judged on {rule['validation_size']} held-out training questions: "
            f"ΔW-L vs the previous round with its 95% CI above {rule['min_delta_ci_low']:+.1f} "
            f"and accuracy down at most {rule['max_accuracy_drop']:.1f} points"
            if rule["on"]
            else "- stop rule: off (every round runs; the last is reported)"
        ),
        "- ΔW-L and accuracy on the test split; round 0 is sft. The tables above show each "
        "strategy's reported round (the last one the stop rule accepted)",
        "",
    ]
    header = [
        "round",
        "prompts c/v/i",
        "lambda",
        "pairs",
        "ΔW-L vs base",
        "ΔW-L vs previous",
        "accuracy %",
        "stop rule (validation)",
        "reported",
    ]
    for s, st in rounds["strategies"].items():
        rows = []
        for e in st["per_round"]:
            acc = e.get("accuracy")
            rows.append(
                [
                    str(e["round"]),
                    "/".join(str(e["categories"][c]) for c in CATEGORIES),
                    f"{e['lambda']:.2f}" if e["lambda"] is not None else "-",
                    str(e["pairs"]),
                    _pts_ci(e.get("delta_wl_vs_base")),
                    _pts_ci(e.get("delta_wl_vs_previous")),
                    "-" if not acc else f"{100 * acc['value']:.1f}",
                    _validation_cell(e.get("validation")),
                    "yes" if e["round"] == st["reported_round"] else "",
                ]
            )
        out += [f"- **{s}**: round {st['reported_round']} reported; stopped: {st['stopped']}", ""]
        out += table(header, rows)
    return out


def rounds_figure(run: RunDir, summary: dict[str, Any]) -> Path | None:
    """figures/rounds.png: Delta W-L vs base and test accuracy per round (round 0: sft),
    one line per strategy, 95% CIs; filled markers are the accepted rounds."""
    rounds = summary.get("rounds")
    if not rounds:
        return None
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    sft_d = (summary.get("delta_wl") or {}).get("sft")
    sft_a = (summary.get("accuracy") or {}).get("sft")
    for i, (s, st) in enumerate(rounds["strategies"].items()):
        pts = [(0, sft_d, sft_a, True)] + [
            (e["round"], e.get("delta_wl_vs_base"), e.get("accuracy"), e["accepted"])
            for e in st["per_round"]
        ]
        for ax, k, scale in ((left, 1, 1.0), (right, 2, 100.0)):
            got = [(r, v, ok) for r, *vals, ok in pts if (v := vals[k - 1])]
            if not got:
                continue
            xs = [r + 0.05 * i for r, _, _ in got]
            ys = [scale * v["value"] for _, v, _ in got]
            err = [
                [scale * (v["value"] - v["ci_low"]) for _, v, _ in got],
                [scale * (v["ci_high"] - v["value"]) for _, v, _ in got],
            ]
            ax.errorbar(xs, ys, yerr=err, color=f"C{i}", capsize=3, label=s)
            ax.scatter(
                xs, ys, color=f"C{i}", facecolors=[f"C{i}" if ok else "white" for *_, ok in got]
            )
    left.axhline(0, color="grey", lw=1, ls="--")
    left.set_ylabel("Delta W-L vs base (points)")
    right.set_ylabel("test accuracy (%)")
    from matplotlib.ticker import MaxNLocator

    for ax in (left, right):
        ax.set_xlabel("round (0 = sft)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # rounds are whole numbers
        ax.legend(fontsize=8)
    fig.suptitle("Rounds: 95% CIs; hollow markers = rounds not accepted by the stop rule")
    return save_figure(fig, run.figure("rounds.png"))
