"""One config over several seeds (and variants), aggregated in one report, as a Ray job.

    ray job submit --working-dir . --runtime-env jobs/runtime_env.yaml -- \
        python -m jobs.experiment --config demo --seeds 0,1,2 --out $PWD/runs/exp-demo

Takes the options of `anchor-align experiment` (--seeds, --strategies, --variant, --set,
--out: give an absolute path, the job runs in a copy of the working directory); `--config
demo` names the packaged demo config. Rerun the same command to resume.
"""

import sys

from anchor_service.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["experiment", *sys.argv[1:]]))
