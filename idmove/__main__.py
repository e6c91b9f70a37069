"""``python -m idmove`` = the ``idmove`` command."""

import sys

from idmove.cli import main

sys.exit(main())
