"""``python -m capsules.experiments``: :func:`capsules.experiments.cli.main`."""

import sys

from .cli import main

sys.exit(main())
