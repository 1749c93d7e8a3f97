"""``python -m monitor``: watch /tmp and memory, or report on EMF logs."""

import sys

from monitor.cli import main

sys.exit(main())
