"""`anchor-align run` and `anchor-align demo`: the whole method in one run directory."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from anchor_service.cli.common import add_command, add_config_args, add_overrides_arg
from anchor_service.config import RunConfig, load_config
from anchor_service.resources import demo_config_path
from anchor_service.rundir import RunDir, default_run_dir

HELP = "run the whole method (SFT, sampling, judging, pairs, DPO, evaluation, report)"


def add_parser(sub: argparse._SubParsersAction) -> None:
    description = (
        "Run the method end to end in one run directory. Rerunning the same command resumes "
        "where a previous run stopped; a stage whose config is unchanged is skipped."
    )
    p = add_command(sub, "run", run, HELP, description)
    add_config_args(p)
    p.add_argument("--out", help="run directory (default runs/<config name>-seed<run_seed>)")

    demo_help = "run the method on the built-in demo task with the embedded model (CPU sized)"
    description = (
        "The whole method on the built-in demo task with the embedded model in bf16 on a "
        "local Ray cluster (12-27 minutes on the 2-core machines measured). Resumable."
    )
    d = add_command(sub, "demo", run_demo, demo_help, description)
    add_overrides_arg(d, "override a demo setting, e.g. --set data.demo.n_train=50")
    d.add_argument("--out", default="runs/demo", help="run directory (default runs/demo)")


def execute(cfg: RunConfig, out: Path) -> int:
    from anchor_service.recipe.method import MethodRun

    summary = MethodRun(cfg, out).run()
    rundir = RunDir(out, create=False)
    print(f"\nrun directory: {rundir.root}")
    for path in rundir.report_files:
        if path.is_file():
            print(f"  {path.name:<13} {path}")
    acc = summary.get("accuracy", {})
    if acc:
        print("\naccuracy:", json.dumps({m: v["value"] for m, v in acc.items()}))
    return 0


def run_config(args: argparse.Namespace) -> tuple[RunConfig, Path]:
    """The config and run directory of `anchor-align run`; `--config demo` names the packaged
    demo config, as for `experiment` and the jobs."""
    path = str(demo_config_path()) if args.config == "demo" else args.config
    cfg = load_config(path, args.overrides)
    return cfg, Path(args.out) if args.out else default_run_dir(args.config, cfg.run_seed)


def run(args: argparse.Namespace) -> int:
    return execute(*run_config(args))


def run_demo(args: argparse.Namespace) -> int:
    cfg = load_config(demo_config_path(), args.overrides)
    return execute(cfg, Path(args.out))
