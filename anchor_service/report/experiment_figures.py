"""An experiment's figures (PNG): Delta W-L and accuracy over seeds, per variant.

Markers are the mean over seeds, bars +- one sample sd, small dots the seeds themselves: a
reader sees at once whether seeds agree. Variants share each figure, side by side.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from anchor_service.experiment_dir import ExperimentDir, experiment_variants
from anchor_service.report.figures import draw_figures, pyplot, save_figure


def _offsets(n: int, spread: float = 0.6) -> list[float]:
    return [0.0] if n == 1 else [spread * (i / (n - 1) - 0.5) for i in range(n)]


def _keys(variants: dict[str, dict[str, Any]], section: str) -> list[str]:
    """Every key of `section` any variant has, in order of first appearance."""
    return list(dict.fromkeys(k for agg in variants.values() for k in agg.get(section, {})))


def delta_forest(experiment: dict[str, Any], path: Path) -> Path | None:
    """Every pairwise row: Delta W-L mean +- sd over seeds, seeds as dots, per variant."""
    variants = experiment_variants(experiment)
    rows = _keys(variants, "pairwise")
    if not rows:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 0.5 * len(rows) * max(1, len(variants) / 2) + 1.4))
    offsets = _offsets(len(variants))
    for k, (name, agg) in enumerate(variants.items()):
        pw = agg.get("pairwise", {})
        for y, row in enumerate(reversed(rows)):
            value = (pw.get(row) or {}).get("value")
            if not value:
                continue
            yk = y - offsets[k]  # the first variant on top
            sd = value["std"] or 0.0
            ax.errorbar(
                value["mean"],
                yk,
                xerr=sd,
                fmt="o",
                color=f"C{k}",
                capsize=3,
                label=(name or None) if y == 0 else None,
            )
            ax.scatter(value["values"], [yk] * len(value["values"]), s=8, color=f"C{k}", alpha=0.5)
    ax.axvline(0, color="grey", lw=1, ls="--")
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(list(reversed(rows)), fontsize=8)
    ax.set_xlabel("Delta W-L (points): mean ± sd over seeds; dots = seeds")
    ax.set_title("Win - loss rate of explanation scores over seeds")
    if len(variants) > 1:
        ax.legend(fontsize=8)
    return save_figure(fig, path)


def accuracy_bars(experiment: dict[str, Any], path: Path) -> Path | None:
    """Accuracy per model: mean +- sd over seeds, seeds as dots, per variant."""
    variants = experiment_variants(experiment)
    models = _keys(variants, "accuracy")
    if not models:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(1.2 * len(models) * max(1, len(variants) / 2) + 2, 3.8))
    width = 0.8 / len(variants)
    for k, (name, agg) in enumerate(variants.items()):
        for j, m in enumerate(models):
            value = ((agg.get("accuracy") or {}).get(m) or {}).get("value")
            if not value:
                continue
            x = j - 0.4 + width * (k + 0.5)
            ax.bar(
                x,
                100 * value["mean"],
                width,
                yerr=100 * (value["std"] or 0.0),
                capsize=3,
                color=f"C{k}",
                alpha=0.7,
                label=(name or None) if j == 0 else None,
            )
            ax.scatter([x] * len(value["values"]), [100 * v for v in value["values"]], s=8, c="k")
    ax.set_xticks(range(len(models)))
    ax.set_xticklabels(models)
    ax.set_ylim(0, 100)
    ax.set_ylabel("accuracy % (mean ± sd; dots = seeds)")
    ax.set_title("Accuracy on the test split over seeds")
    if len(variants) > 1:
        ax.legend(fontsize=8)
    return save_figure(fig, path)


def write_experiment_figures(exp: ExperimentDir, experiment: dict[str, Any]) -> list[Path]:
    """An experiment's figures under figures/; those with nothing to show are left out."""
    drawers = {"accuracy.png": accuracy_bars, "delta_wl.png": delta_forest}
    return draw_figures(exp, experiment, drawers)
