"""Sampling, debate, judging and pair building (steps 1-5) as a Ray job.

    ray job submit --working-dir . --runtime-env jobs/runtime_env.yaml -- \
        python -m jobs.build_pairs --config jobs/configs/arc_challenge.yaml
"""

import sys

from jobs.entry import main

if __name__ == "__main__":
    sys.exit(main("pairs", __doc__.splitlines()[0]))
