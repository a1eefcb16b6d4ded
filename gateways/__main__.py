"""``python -m gateways``: the same as the ``gateways`` command."""

import sys

from gateways.cli import main

sys.exit(main())
