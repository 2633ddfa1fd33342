"""Evaluation of every model and the report (step 7) as a Ray job.

    ray job submit --working-dir . --runtime-env jobs/runtime_env.yaml -- \
        python -m jobs.evaluate --config jobs/configs/arc_challenge.yaml
"""

import sys

from jobs.entry import main

if __name__ == "__main__":
    sys.exit(main("report", __doc__.splitlines()[0]))
