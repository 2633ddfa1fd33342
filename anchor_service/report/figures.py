"""The report's figures (PNG): per-criterion means with CIs, a Delta W-L forest plot, and
the DPO training curves per strategy."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from anchor_service.core.types import CRITERIA
from anchor_service.rundir import ReportDir, RunDir

# The DPO training curves: (column of train_log.parquet, axis label).
DPO_CURVES = (("loss", "DPO loss"), ("rewards/margins", "reward margin (chosen - rejected)"))


def pyplot():
    """matplotlib.pyplot on the Agg backend, imported only when a figure is drawn."""
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path) -> Path:
    """Lay out, write `fig` as PNG at `path` (its folder made if missing) and close it."""
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
    return path


def criteria_bars(summary: dict[str, Any], path: Path) -> Path | None:
    """Grouped bars: mean value (0-3) per criterion and model, with 95% CI error bars."""
    crit = summary.get("criteria") or {}
    if not crit:
        return None
    plt = pyplot()
    models = list(crit)
    width = 0.8 / len(models)
    fig, ax = plt.subplots(figsize=(9, 4))
    for i, m in enumerate(models):
        xs, means, lo, hi = [], [], [], []
        for j, c in enumerate(CRITERIA):
            v = crit[m].get(c) or {}
            if v.get("mean") is None:
                continue
            xs.append(j + i * width - 0.4 + width / 2)
            means.append(v["mean"])
            lo.append(v["mean"] - v["ci_low"])
            hi.append(v["ci_high"] - v["mean"])
        ax.bar(xs, means, width, yerr=[lo, hi], capsize=3, label=m)
    ax.set_xticks(range(len(CRITERIA)))
    ax.set_xticklabels([c.replace("_", " ") for c in CRITERIA], fontsize=8)
    ax.set_ylim(0, 3)
    ax.set_ylabel("mean verdict value (0-3)")
    ax.set_title("Explanation quality per criterion (95% bootstrap CI)")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def delta_forest(summary: dict[str, Any], path: Path) -> Path | None:
    """Forest plot: Delta W-L of every pairwise row with its 95% CI; significant rows filled."""
    rows = summary.get("pairwise") or []
    if not rows:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.2))
    for y, r in enumerate(reversed(rows)):
        ax.errorbar(
            r["value"],
            y,
            xerr=[[r["value"] - r["ci_low"]], [r["ci_high"] - r["value"]]],
            fmt="o",
            mfc="C0" if r.get("significant") else "white",
            color="C0",
            capsize=3,
        )
    ax.axvline(0, color="grey", lw=1, ls="--")
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{r['a']} vs {r['b']}" for r in reversed(rows)], fontsize=8)
    ax.set_xlabel("Delta W-L (points; filled = significant after Holm)")
    ax.set_title("Win - loss rate of explanation scores, 95% paired bootstrap CI")
    return save_figure(fig, path)


Drawer = Callable[[dict[str, Any], Path], "Path | None"]


def draw_figures(d: ReportDir, data: dict[str, Any], drawers: dict[str, Drawer]) -> list[Path]:
    """Each drawer's figure of `data` at figures/<name> of a run or experiment directory;
    those with nothing to show are left out."""
    drawn = [draw(data, d.figure(name)) for name, draw in drawers.items()]
    return [p for p in drawn if p is not None]


def dpo_curves(run: RunDir | Path, path: Path) -> Path | None:
    """Loss and reward margin per optimizer step of each strategy's DPO (its train_log)."""
    import pandas as pd

    rundir = run if isinstance(run, RunDir) else RunDir(run, create=False)
    logs = {m: pd.read_parquet(rundir.train_log(m)) for m in rundir.trained_models() if m != "sft"}
    if not logs:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, len(DPO_CURVES), figsize=(9, 3.5))
    for ax, (column, label) in zip(axes, DPO_CURVES, strict=True):
        for strategy, log in logs.items():
            ax.plot(log["step"], log[column], marker=".", label=strategy)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(label)
    axes[0].legend(fontsize=8)
    fig.suptitle("DPO training per strategy (train_log.parquet)")
    return save_figure(fig, path)


def write_figures(run: RunDir, summary: dict[str, Any]) -> list[Path]:
    """A run's figures under figures/; those with nothing to show are left out."""
    drawn = draw_figures(
        run, summary, {"criteria.png": criteria_bars, "delta_wl.png": delta_forest}
    )
    curves = dpo_curves(run, run.figure("dpo_training.png"))
    return drawn + ([curves] if curves is not None else [])
