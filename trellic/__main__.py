"""``python -m trellic``: the ``trellic`` command."""

import sys

from trellic.cli import main

sys.exit(main())
