"""DPO of every strategy (step 6) as a Ray job; earlier stages run if not done.

    ray job submit --working-dir . --runtime-env jobs/runtime_env.yaml -- \
        python -m jobs.train_dpo --config jobs/configs/arc_challenge.yaml
"""

import sys

from jobs.entry import main

if __name__ == "__main__":
    sys.exit(main("dpo", __doc__.splitlines()[0]))
