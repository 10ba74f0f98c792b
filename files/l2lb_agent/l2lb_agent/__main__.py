"""``python -m l2lb_agent``: the same as the ``l2lb-agent`` command."""

import sys

from .cli import main

sys.exit(main())
