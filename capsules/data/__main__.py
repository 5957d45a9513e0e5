"""``python -m capsules.data fetch|check [--data-dir DIR]``: get MNIST, or verify its MD5 sums."""

from __future__ import annotations

import argparse
import sys

from .mnist import ENV_VAR, check, default_data_dir, fetch, run_command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m capsules.data", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["fetch", "check"])
    parser.add_argument("--data-dir", default=None, help=f"default: ${ENV_VAR} or {default_data_dir()}")
    args = parser.parse_args(argv)
    get = fetch if args.command == "fetch" else check
    return run_command(lambda: f"MNIST is ready in {get(args.data_dir)} (MD5 sums verified)")


if __name__ == "__main__":
    sys.exit(main())
