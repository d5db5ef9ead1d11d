import sys

from xiaodian.cli import main

sys.exit(main())
