"""An experiment as one job (issue 5, item 4): every (variant, seed) run, then the aggregate.

The layout and the per-run configs are experiment_dir.py's. Each run is a normal run
directory run by MethodRun, so an experiment resumes like a run: a run whose config.yaml
equals its planned config and that has its summary.json is finished and skipped without
starting Ray; any other run goes to MethodRun, which skips its finished stages.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from anchor_service.config import dump_config
from anchor_service.experiment_dir import Experiment, PlannedRun, write_spec
from anchor_service.rundir import RunDir

log = logging.getLogger(__name__)


def is_finished(run: PlannedRun) -> bool:
    """A finished run of exactly this config (then nothing in it would be recomputed)."""
    rundir = RunDir(run.path, create=False)
    config, summary = rundir.config, rundir.summary
    return (
        summary.is_file()
        and config.is_file()
        and config.read_text(encoding="utf-8") == dump_config(run.cfg)
    )


def run_experiment(exp: Experiment, root: str | Path) -> dict[str, Any]:
    """Run every (variant, seed) not finished yet, then write experiment.json and the report."""
    root = Path(root)
    runs = exp.plan(root)  # every config is validated before the first run starts
    root.mkdir(parents=True, exist_ok=True)
    write_spec(root, exp)
    for i, run in enumerate(runs, 1):
        label = f"{run.variant} seed {run.seed}" if run.variant else f"seed {run.seed}"
        if is_finished(run):
            log.info("experiment run %d/%d (%s): finished already, skipped", i, len(runs), label)
            continue
        log.info("experiment run %d/%d (%s) -> %s", i, len(runs), label, run.path)
        from anchor_service.recipe.method import MethodRun

        MethodRun(run.cfg, run.path).run()
    from anchor_service.report.experiment import write_experiment

    return write_experiment(root)
