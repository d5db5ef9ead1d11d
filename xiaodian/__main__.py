"""`python -m xiaodian` runs the `xiaodian` command (its dispatcher lives in the composition
root, `devstack.cli`, the one package allowed to import every other)."""

import sys

from devstack.cli import main

sys.exit(main())
