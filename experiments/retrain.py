"""Retrain the best genotypes of a logged sweep: ``python experiments/retrain.py --experiment NAME --top K``."""

import sys

from dasvit.platform.retrain_jobs import main

if __name__ == "__main__":
    sys.exit(main())
