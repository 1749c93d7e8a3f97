"""``python -m handler``: the packaging command line."""

import sys

from handler.cli import main

sys.exit(main())
