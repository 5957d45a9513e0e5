"""Print the paper's Table 1 beside the shipped models, as the README's markdown.

    python scripts/table1.py                      # checkpoints/ (or $CAPSULES_CHECKPOINT_DIR)
    python scripts/table1.py --checkpoints DIR

The table and the sentence under it come from :func:`capsules.zoo.table1`, as on the dashboard's
experiments page: each shipped model's test error with its 95% Wilson interval, epochs, training
time and hardware, read from the JSONs beside the weights (nothing is evaluated); a row no shipped
model matches yet says "training". Paste the output into the README's Results.
"""

from __future__ import annotations

import argparse
import sys

from capsules.zoo import list_shipped, table1


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python scripts/table1.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoints", default=None,
                        help="folder of the shipped models (default: $CAPSULES_CHECKPOINT_DIR, else checkpoints/)")
    args = parser.parse_args(argv)
    table = table1(list_shipped(args.checkpoints))
    print(table.markdown())
    print()
    print(f"Within the noise? {table.noise}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
