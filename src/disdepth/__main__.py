"""``python -m disdepth`` runs the command line."""

import sys

from disdepth.cli import main

sys.exit(main())
