"""``python -m api.cli``: the ``hwnas`` command line."""

import sys

from api.cli import main

sys.exit(main())
