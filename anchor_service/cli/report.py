"""`anchor-align report RUN_DIR`: rebuild summary.json and report.md from a run's files alone."""

from __future__ import annotations

import argparse
from pathlib import Path

from anchor_service.cli.common import UsageError

HELP = "rebuild summary.json and the report of a run directory from its files"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help=HELP,
        description="Recompute summary.json and report.md of a finished run directory from "
        "its files alone (no model is loaded).",
    )
    p.add_argument("run_dir", help="a run directory written by `anchor-align run`")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise UsageError(f"{run_dir} is not a run directory (no config.yaml)")
    from anchor_service.report.summary import write_summary

    write_summary(run_dir)
    for name in ("summary.json", "report.md", "report.html"):
        if (run_dir / name).is_file():
            print(run_dir / name)
    return 0
