"""``python -m capsules.zoo [--update-docs]``: :func:`capsules.zoo.docs.main`."""

import sys

from .docs import main

sys.exit(main(sys.argv[1:]))
