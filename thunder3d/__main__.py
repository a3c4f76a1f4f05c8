"""``python -m thunder3d`` runs the command-line tool."""

import sys

from thunder3d.cli import main

sys.exit(main())
