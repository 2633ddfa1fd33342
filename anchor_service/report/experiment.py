"""experiment.json and the experiment's report.md / report.html / figures, from its runs' files.

experiment.json (ARCHITECTURE.md): `experiment` (what was run: config, seeds, overrides,
variants, the run directories), then, without variants, summary.json's keys aggregated over
the seeds by `evaluation.stats.aggregate_seeds` (each numeric leaf: mean, std, seeds, values).
With variants, `variants` maps each name to that aggregate, and `comparison` lists the
Delta W-L rows of every DPO model against `sft` and against the other DPO models, per
variant, with each variant's per-seed difference from the first variant (paired by seed: a
seed has the same data order, sampling keys and LoRA init in every variant).

Spread over seeds is reported as mean +- sample sd with the per-seed values: with a few
seeds it is a rough figure of how much the method's own randomness moves a result, not a
confidence interval. Each run's report keeps its own bootstrap CIs.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import yaml

from anchor_service.core.types import CATEGORIES, CRITERIA
from anchor_service.evaluation.stats import aggregate_seeds
from anchor_service.experiment_dir import (
    NO_VARIANT,
    ExperimentDir,
    experiment_variants,
    find_runs,
    read_spec,
)
from anchor_service.report.markdown import figures_section, section, table
from anchor_service.rundir import RunDir


def _summaries(runs: dict[int, Path], rebuild: bool) -> list[dict[str, Any]]:
    from anchor_service.report.summary import write_summary

    out = []
    for run in runs.values():
        summary = RunDir(run, create=False).summary
        if rebuild or not summary.is_file():
            out.append(write_summary(run))
        else:
            out.append(json.loads(summary.read_text(encoding="utf-8")))
    return out


def _mean_sd(values: list[float]) -> dict[str, Any]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else None,
    }


def _dpo_models(agg: dict[str, Any]) -> list[str]:
    return [m for m in agg.get("accuracy", {}) if m not in ("base", "sft")]


def comparison(variants: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Delta W-L of each DPO model vs sft and vs the other DPO models, per variant.

    Each row: {a, b, variants: {name: {mean, std, seeds, values, significant}}, difference:
    {name: {mean, std, seeds, values}}}, the difference of every variant after the first
    from the first, seed by seed over the seeds both have.
    """
    names = list(variants)
    models = list(dict.fromkeys(m for agg in variants.values() for m in _dpo_models(agg)))
    wanted = [(a, "sft") for a in models] + [
        (a, b) for i, a in enumerate(models) for b in models[i + 1 :]
    ]
    rows = []
    for a, b in wanted:
        per_variant = {}
        for name, agg in variants.items():
            pw = agg.get("pairwise", {})
            row = pw.get(f"{a} vs {b}") or pw.get(f"{b} vs {a}")
            if not row or "value" not in row:
                continue
            sign = 1.0 if f"{a} vs {b}" in pw else -1.0  # report as a vs b
            value = row["value"]
            per_variant[name] = {
                "mean": sign * value["mean"],
                "std": value["std"],
                "seeds": value["seeds"],
                "values": [sign * v for v in value["values"]],
                "significant": (row.get("significant") or {}).get("counts", {}).get("true", 0),
            }
        if not per_variant:
            continue
        difference = {}
        first = per_variant.get(names[0])
        for name in names[1:]:
            other = per_variant.get(name)
            if not first or not other:
                continue
            ref = dict(zip(first["seeds"], first["values"], strict=True))
            paired = [
                (s, v - ref[s])
                for s, v in zip(other["seeds"], other["values"], strict=True)
                if s in ref
            ]
            if paired:
                diffs = [d for _, d in paired]
                difference[name] = {
                    **_mean_sd(diffs),
                    "seeds": [s for s, _ in paired],
                    "values": diffs,
                }
        rows.append({"a": a, "b": b, "variants": per_variant, "difference": difference})
    return rows


def build_experiment(root: str | Path, rebuild: bool = False) -> dict[str, Any]:
    """experiment.json of an experiment directory (rebuild: recompute every run's summary)."""
    root = Path(root)
    runs = find_runs(root)
    if not runs:
        raise FileNotFoundError(
            f"{root}: no run directories (seed-<s>/config.yaml or <variant>/seed-<s>/"
            "config.yaml); run `anchor-align experiment` first"
        )
    spec = read_spec(root)
    meta = {
        "config": spec.config if spec else None,
        "overrides": spec.overrides if spec else [],
        "seeds": sorted({s for r in runs.values() for s in r}),
        "variants": (
            {v.name: list(v.overrides) for v in spec.variants}
            if spec
            else {v: [] for v in runs if v != NO_VARIANT}
        ),
    }
    paths = {v: {str(s): str(p.relative_to(root)) for s, p in r.items()} for v, r in runs.items()}
    # {seed: run dir} without variants, {variant: {seed: run dir}} with them.
    meta["runs"] = paths.get(NO_VARIANT, paths) if list(paths) == [NO_VARIANT] else paths
    aggregates = {v: aggregate_seeds(_summaries(r, rebuild)) for v, r in runs.items()}
    if list(aggregates) == [NO_VARIANT]:
        return {"experiment": meta, **aggregates[NO_VARIANT]}
    return {"experiment": meta, "variants": aggregates, "comparison": comparison(aggregates)}


def write_experiment(root: str | Path, rebuild: bool = False) -> dict[str, Any]:
    """Write experiment.json, report.md, the figures and report.html of an experiment."""
    from anchor_service.report.experiment_figures import write_experiment_figures
    from anchor_service.report.html import render_html
    from anchor_service.rundir import write_atomic, write_json_atomic

    exp = ExperimentDir(root, create=False)
    root = exp.root
    experiment = build_experiment(root, rebuild=rebuild)
    write_json_atomic(experiment, exp.summary)
    figures = write_experiment_figures(exp, experiment)
    markdown = render_experiment(experiment) + figures_section(figures)
    write_atomic(exp.report_md, markdown)
    first_run = next(iter(find_runs(root).values()))
    configs = [RunDir(run, create=False).config for run in first_run.values()]
    config_text = yaml.safe_dump(
        {k: experiment["experiment"][k] for k in ("config", "overrides", "seeds", "variants")},
        sort_keys=False,
    )
    if configs and configs[0].is_file():
        config_text += f"\n# config of the first run ({configs[0].parent.relative_to(root)}):\n"
        config_text += configs[0].read_text(encoding="utf-8")
    write_atomic(exp.report_html, render_html(markdown, figures, config_text))
    return experiment


# ---------------------------------------------------------------------------------- markdown


def _num(agg: dict | None, scale: float = 1.0, fmt: str = ".1f", values: bool = True) -> str:
    """`mean ± sd (v1, v2, ...)` of an aggregated leaf; `-` when missing."""
    if not agg or "mean" not in agg:
        return "-"
    text = f"{scale * agg['mean']:{fmt}}"
    if agg.get("std") is not None:
        text += f" ± {scale * agg['std']:{fmt.lstrip('+')}}"
    if values and len(agg.get("values", [])) > 1:
        text += " (" + ", ".join(f"{scale * v:{fmt}}" for v in agg["values"]) + ")"
    return text


def _counts(agg: dict | None) -> str:
    if not agg or "counts" not in agg:
        return "-"
    return ", ".join(f"{k} {n}" for k, n in agg["counts"].items())


def _names(agg: dict | None) -> str:
    """A string leaf the same in every seed reads as itself, else each value with its seeds."""
    counts = (agg or {}).get("counts", {})
    if len(counts) == 1:
        return next(iter(counts))
    return ", ".join(f"{k} ({n} seeds)" for k, n in counts.items()) or "-"


def _n_seeds(agg: dict | None) -> int:
    return len((agg or {}).get("seeds", []))


def _ci_excludes_zero(row: dict) -> int:
    """Seeds whose own bootstrap CI of this row lies wholly on one side of 0."""
    lo, hi = row.get("ci_low") or {}, row.get("ci_high") or {}
    pairs = zip(lo.get("values", []), hi.get("values", []), strict=False)
    return sum(1 for a, b in pairs if a > 0 or b < 0)


def _judges(agg: dict) -> list[str]:
    j = agg.get("judge", {})
    out = [
        f"- alignment judge: {_names(j.get('alignment'))}",
        f"- evaluation judge: {_names(j.get('evaluation'))}",
    ]
    for role in ("alignment", "evaluation"):
        s = (j.get("sanity") or {}).get(role) or {}
        if "passed" in s:
            low = min(s["passed"]["values"]) < 8
            out.append(
                f"- {role} judge sanity: {_num(s['passed'], fmt='.0f')} of "
                f"{s['total']['mean']:.0f}"
                + (
                    " (below 8/10 in some seed: a pipeline check there, not evidence)"
                    if low
                    else ""
                )
            )
    for judge, a in (agg.get("judge_agreement") or {}).items():
        out.append(
            f"- {judge} against the oracle: Spearman {_num(a.get('spearman', {}).get('value'), fmt='+.2f')}; "
            f"pairwise agreement {_num(a.get('pairwise', {}).get('value'), 100, '.0f')}%; within a "
            f"question {_num(a.get('pairwise_within_question', {}).get('value'), 100, '.0f')}%"
        )
    return out


def _significant_in(row: dict) -> int:
    """Seeds in which a pairwise row was significant after Holm."""
    return (row.get("significant") or {}).get("counts", {}).get("true", 0)


def _variant_section(agg: dict, heading: str) -> list[str]:
    return [
        *_variant_models(agg, heading),
        *_variant_pairwise(agg, heading),
        *_variant_criteria(agg, heading),
        *_variant_pairs(agg, heading),
        *_variant_claims(agg, heading),
    ]


def _variant_models(agg: dict, heading: str) -> list[str]:
    acc, dwl = agg.get("accuracy", {}), agg.get("delta_wl", {})
    pw = agg.get("pairwise", {})
    if not acc:
        return []
    rows = []
    for m, a in acc.items():
        d = dwl.get(m)
        if not d:
            rows.append([m, _num(a.get("value"), 100), "(reference)", ""])
            continue
        sig = _significant_in(pw.get(f"{m} vs base", {}))
        rows.append(
            [
                m,
                _num(a.get("value"), 100),
                _num(d.get("value"), 1, "+.1f"),
                f"{sig} of {_n_seeds(d.get('value'))} seeds",
            ]
        )
    return section(
        f"{heading}Models on the test split (mean ± sd over seeds, per-seed values)",
        ["model", "accuracy %", "ΔW-L vs base (pts)", "Holm-significant in"],
        rows,
    )


def _variant_pairwise(agg: dict, heading: str) -> list[str]:
    pw = agg.get("pairwise", {})
    if not pw:
        return []
    rows = []
    for name, row in pw.items():
        n = _n_seeds(row.get("value"))
        rows.append(
            [
                name,
                _num(row.get("value"), 1, "+.1f"),
                f"{_ci_excludes_zero(row)} of {n}",
                f"{_significant_in(row)} of {n}",
            ]
        )
    header = [
        "a vs b",
        "ΔW-L mean ± sd (per seed)",
        "seeds whose CI excludes 0",
        "Holm-significant in",
    ]
    return section(f"{heading}Every model against every other (ΔW-L of a vs b, pts)", header, rows)


def _variant_criteria(agg: dict, heading: str) -> list[str]:
    crit = agg.get("criteria", {})
    if not crit:
        return []
    rows = (
        [m, *(_num((cs.get(c) or {}).get("mean"), 1, ".2f", values=False) for c in CRITERIA)]
        for m, cs in crit.items()
    )
    return section(
        f"{heading}Criteria (mean 0-3, mean ± sd over seeds)", ["model", *CRITERIA], rows
    )


def _variant_pairs(agg: dict, heading: str) -> list[str]:
    cats = agg.get("categories", {})
    out = [f"## {heading}Pair building (mean ± sd over seeds)", ""]
    out += table(["", *CATEGORIES], [["prompts", *(_num(cats.get(c)) for c in CATEGORIES)]])
    skipped = (agg.get("dpo_skipped") or {}).get("counts", {})
    rows = (
        [
            s,
            _num(n),
            _num(agg.get("lambda", {}).get(s), fmt=".2f"),
            f"{skipped.get(s, 0)} of {_n_seeds(n)} seeds",
        ]
        for s, n in agg.get("pairs", {}).items()
    )
    return out + table(["strategy", "pairs", "lambda", "DPO skipped in"], rows)


def _variant_claims(agg: dict, heading: str) -> list[str]:
    claims = agg.get("claims", {})
    if not claims:
        return []
    out = [f"## {heading}The paper's claims (verdicts over seeds)", ""]
    for name, c in claims.items():
        out.append(f"- **{name}**: {_counts(c.get('verdict'))}")
        # A claim not applicable in every seed has no conditions, only seed counts.
        for what, cond in (c.get("conditions") or {}).items():
            if isinstance(cond, dict) and "value" in cond:
                out.append(f"  - {what}: {_num(cond['value'], 1, '+.2f')}")
    out.append("")
    return out


def render_experiment(experiment: dict[str, Any]) -> str:
    """report.md of an experiment."""
    meta = experiment["experiment"]
    variants = experiment_variants(experiment)
    first = next(iter(variants.values()))
    dataset = ", ".join((first.get("dataset") or {}).get("counts", {})) or "?"
    seeds = ", ".join(map(str, meta["seeds"]))
    out = [
        f"# Experiment report: {dataset}, seeds {seeds}",
        "",
        "Each figure is the mean ± sample sd over seeds, with the per-seed values in "
        "parentheses: with a few seeds this is a rough measure of how much the method's own "
        "randomness moves a result, not a confidence interval; each run's report.md keeps "
        "its bootstrap CIs.",
        "",
        f"- config: {meta.get('config') or 'defaults'}"
        + (f"; overrides: {', '.join(meta['overrides'])}" if meta.get("overrides") else ""),
    ]
    for name, agg in variants.items():
        if name:
            overrides = ", ".join(meta["variants"].get(name, [])) or "no overrides"
            out += ["", f"## Variant {name}: {overrides}", ""]
        else:
            out.append("")
        out += _judges(agg)
        out.append("")
        out += _variant_section(agg, f"{name}: " if name else "")
    rows = experiment.get("comparison")
    if rows:
        names = list(variants)
        out += [
            "## Variants compared: ΔW-L of the DPO models (pts, mean ± sd over seeds)",
            "",
            f"Difference: each variant minus {names[0]}, paired by seed (a seed has the same "
            "data order, sampling keys and LoRA init in every variant).",
            "",
        ]
        table_rows = []
        for r in rows:
            cells = []
            for n in names:
                v = r["variants"].get(n)
                cells.append(
                    f"{_num(v, 1, '+.1f')}; Holm-sig. in {v['significant']}/{_n_seeds(v)}"
                    if v
                    else "-"
                )
            diffs = [_num(r["difference"].get(n), 1, "+.1f") for n in names[1:]]
            table_rows.append([f"{r['a']} vs {r['b']}", *cells, *diffs])
        header = ["a vs b", *names, *(f"{n} - {names[0]}" for n in names[1:])]
        out += table(header, table_rows)
    return "\n".join(out) + "\n"
