"""``python -m cs_metrics``: the command line (see ``cs_metrics.cli``)."""

from __future__ import annotations

import sys

from cs_metrics.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
