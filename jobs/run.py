"""The whole method (SFT, pairs, DPO, evaluation, report) as one Ray job.

    ray job submit --working-dir . --runtime-env jobs/runtime_env.yaml -- \
        python -m jobs.run --config jobs/configs/arc_challenge.yaml
"""

import sys

from jobs.entry import main

if __name__ == "__main__":
    sys.exit(main("report", __doc__.splitlines()[0]))
