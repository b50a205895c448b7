"""``python -m cli``: the ``hwnas`` command line."""

import sys

from cli import main

sys.exit(main())
