"""What every job does: parse --config/--out/--set, attach to Ray, run the method up to a stage."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def main(until: str, description: str, argv: list[str] | None = None) -> int:
    from anchor_service.config import ConfigError, load_config
    from anchor_service.resources import demo_config_path
    from anchor_service.rundir import default_run_dir

    p = argparse.ArgumentParser(description=description)
    p.add_argument("--config", required=True, help="YAML config, or `demo` for the packaged demo")
    p.add_argument("--out", help="run directory (default runs/<config name>-seed<run_seed>)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    path = demo_config_path() if args.config == "demo" else Path(args.config)
    try:
        cfg = load_config(path, args.overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else default_run_dir(str(path), cfg.run_seed)
    if not out.is_absolute() and _in_job_working_dir(Path.cwd()):
        logging.getLogger("jobs").warning(
            "--out %s is relative and this job runs in Ray's temporary copy of the working "
            "dir (%s): the run directory is deleted with it. Pass an absolute --out on "
            "storage that outlives the job (e.g. /mnt/anchor/runs/NAME).",
            out,
            Path.cwd(),
        )

    from anchor_service.recipe.method import MethodRun

    MethodRun(cfg, out).run(until=until)
    print(f"run directory: {out.resolve()} (stages up to '{until}' done)")
    return 0


def _in_job_working_dir(cwd: Path) -> bool:
    """Whether `cwd` is a `ray job submit --working-dir` copy (Ray unpacks it there)."""
    return "runtime_resources" in cwd.parts and any("working_dir" in p for p in cwd.parts)
