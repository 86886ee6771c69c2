"""``python -m services.cli``: the same as the ``sp4n`` command."""

import sys

from services.cli import main

sys.exit(main())
