"""``python -m mvdecor.cli`` is the ``mvdecor`` command."""

import sys

from mvdecor.cli import main

sys.exit(main())
