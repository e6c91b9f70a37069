"""``python -m bench`` (``make bench``): the region fan-out benchmark, see ``bench/README.md``."""

from __future__ import annotations

import sys

from bench.fanout import main

if __name__ == "__main__":
    sys.exit(main())
