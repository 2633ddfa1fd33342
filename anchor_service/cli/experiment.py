"""`anchor-align experiment`: one dataset x strategies x seeds (x variants) as one job."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from anchor_service.cli.common import add_command, add_config_args

HELP = "run one config over several seeds (and variants) and aggregate them in one report"

EPILOG = """\
Each seed is a normal run directory, DIR/seed-<s>/ (DIR/<variant>/seed-<s>/ with variants),
with run_seed = s and everything else equal (the data subset is pinned). Rerunning the
same command resumes: finished runs are skipped, unfinished ones resume stage by stage.
DIR/experiment.json holds summary.json's numbers as mean, sd and per-seed values;
DIR/report.md, report.html and figures/ show them. `anchor-align report DIR` rebuilds them.

examples:
  anchor-align experiment --config demo --seeds 0,1,2 --out runs/exp-demo
  anchor-align experiment --config demo --seeds 0-2 --out runs/exp-demo-judges \\
      --variant embedded:judge.mode=probability --variant oracle:judge.mode=oracle
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    description = (
        "Run the method once per seed (and per variant) with the same config, then "
        "aggregate the runs: mean and spread over seeds, variants compared."
    )
    p = add_command(
        sub,
        "experiment",
        run,
        HELP,
        description,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_args(p)
    p.add_argument(
        "--seeds",
        required=True,
        help="run seeds: a list and/or ranges, e.g. 0,1,2 or 0-4",
    )
    p.add_argument(
        "--strategies",
        help="pair strategies, e.g. anchor,rank (default: the config's pairs.strategies)",
    )
    p.add_argument(
        "--variant",
        dest="variants",
        action="append",
        default=[],
        metavar="NAME:KEY=VALUE[,KEY=VALUE]",
        help="a named set of overrides run over every seed (repeatable), e.g. "
        "oracle:judge.mode=oracle; with variants the runs live in DIR/<variant>/seed-<s>/",
    )
    p.add_argument("--out", help="experiment directory (default runs/<config name>-experiment)")


def run(args: argparse.Namespace) -> int:
    from anchor_service.experiment_dir import ExperimentDir, experiment_of
    from anchor_service.recipe.experiment import run_experiment

    exp, default = experiment_of(
        args.config, args.seeds, args.overrides, args.strategies, args.variants
    )
    out = Path(args.out) if args.out else default
    experiment = run_experiment(exp, out)
    exp_dir = ExperimentDir(out, create=False)
    print(f"\nexperiment directory: {exp_dir.root}")
    for path in exp_dir.report_files:
        if path.is_file():
            print(f"  {path.name:<15} {path}")
    for variant, agg in (experiment.get("variants") or {"": experiment}).items():
        acc = {m: round(v["value"]["mean"], 4) for m, v in agg.get("accuracy", {}).items()}
        if acc:
            print(f"\nmean accuracy{f' ({variant})' if variant else ''}:", json.dumps(acc))
    return 0
