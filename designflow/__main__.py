"""`python -m designflow` runs the designflow command."""

import sys

from designflow.cli import main

sys.exit(main())
