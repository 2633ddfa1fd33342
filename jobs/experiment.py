"""One config over several seeds (and variants), aggregated in one report, as a Ray job.

    ray job submit --working-dir . --runtime-env jobs/runtime_env.yaml -- \
        python -m jobs.experiment --config demo --seeds 0,1,2 --out $PWD/runs/exp-demo

Takes the options of `anchor-align experiment` (--seeds, --strategies, --variant, --set,
--out: give an absolute path, the job runs in a copy of the working directory); `--config
demo` names the packaged demo config. Rerun the same command to resume.
"""

import argparse
import logging
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from anchor_service.config import ConfigError
    from anchor_service.experiment_dir import experiment_of
    from anchor_service.recipe.experiment import run_experiment

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", help="YAML config, or `demo` for the packaged demo")
    p.add_argument("--seeds", required=True, help="run seeds, e.g. 0,1,2 or 0-4")
    p.add_argument("--strategies", help="pair strategies, e.g. anchor,rank")
    p.add_argument("--variant", dest="variants", action="append", default=[])
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", help="experiment directory (default runs/<config>-experiment)")
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        exp, default = experiment_of(
            args.config, args.seeds, args.overrides, args.strategies, args.variants
        )
        out = Path(args.out) if args.out else default
        run_experiment(exp, out)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"experiment directory: {out.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
