"""``python -m capsules.data fetch|check [--data-dir DIR]``: get MNIST, or verify its MD5 sums."""

from __future__ import annotations

import argparse
import sys

from .mnist import ENV_VAR, DatasetError, check, default_data_dir, fetch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m capsules.data", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["fetch", "check"])
    parser.add_argument("--data-dir", default=None, help=f"default: ${ENV_VAR} or {default_data_dir()}")
    args = parser.parse_args(argv)
    try:
        root = fetch(args.data_dir) if args.command == "fetch" else check(args.data_dir)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"MNIST is ready in {root} (MD5 sums verified)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
