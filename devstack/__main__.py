"""`python -m devstack` is `xiaodian`."""

import sys

from devstack.cli import main

sys.exit(main())
