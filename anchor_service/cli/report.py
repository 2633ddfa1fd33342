"""`anchor-align report DIR`: rebuild a run's (or an experiment's) summary and report from files."""

from __future__ import annotations

import argparse
from pathlib import Path

from anchor_service.cli.common import UsageError, add_command

HELP = "rebuild summary.json (or experiment.json) and the report of a run (or experiment)"


def add_parser(sub: argparse._SubParsersAction) -> None:
    description = (
        "Recompute summary.json and report.md of a finished run directory, or "
        "experiment.json and the aggregated report of an experiment directory, from their "
        "files alone (no model is loaded)."
    )
    p = add_command(sub, "report", run, HELP, description)
    p.add_argument(
        "run_dir",
        help="a run directory written by `anchor-align run`, or an experiment directory "
        "written by `anchor-align experiment` (every run's summary, then experiment.json)",
    )


def run(args: argparse.Namespace) -> int:
    from anchor_service.experiment_dir import ExperimentDir, is_experiment_dir
    from anchor_service.rundir import RunDir

    run_dir = Path(args.run_dir)
    if is_experiment_dir(run_dir):
        from anchor_service.report.experiment import write_experiment

        try:
            write_experiment(run_dir, rebuild=True)
        except FileNotFoundError as exc:
            raise UsageError(str(exc)) from None
        written = ExperimentDir(run_dir, create=False).report_files
    elif RunDir(run_dir, create=False).config.is_file():
        from anchor_service.report.summary import write_summary

        write_summary(run_dir)
        written = RunDir(run_dir, create=False).report_files
    else:
        raise UsageError(
            f"{run_dir} is neither a run directory (no config.yaml) nor an experiment "
            "directory (no experiment.yaml, no seed-<s>/ runs)"
        )
    for path in written:
        if path.is_file():
            print(path)
    return 0
