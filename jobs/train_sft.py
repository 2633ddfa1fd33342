"""Label-only SFT (step 0) as a Ray job.

    ray job submit --working-dir . --runtime-env jobs/runtime_env.yaml -- \
        python -m jobs.train_sft --config jobs/configs/arc_challenge.yaml
"""

import sys

from jobs.entry import main

if __name__ == "__main__":
    sys.exit(main("sft", __doc__.splitlines()[0]))
