"""Run a DASViT sweep: ``python experiments/sweep.py`` on a laptop, ``ray submit cluster/config.yaml
experiments/sweep.py`` on a cluster. Everything it needs is in the installed ``dasvit`` distribution, because
``ray submit`` uploads only this file."""

import sys

from dasvit.platform.sweep import main

if __name__ == "__main__":
    sys.exit(main())
