"""``python -m kopaths <command> ...``: the ``kopaths`` command line (:mod:`kopaths.cli`)."""

import sys

from kopaths.cli import main

sys.exit(main())
