"""Print the tables of "Can it be fooled?" from the shipped results, or write them into docs/experiments.md.

    python scripts/fooled_table.py                  # print
    python scripts/fooled_table.py --update-docs    # replace the block between the markers

The tables are :func:`capsules.analysis.trust.markdown` of the ``ood`` and ``adversarial`` sections
of ``checkpoints/capsnet-mnist.experiments.json`` and ``checkpoints/cnn-mnist.experiments.json``
(read with :func:`capsules.experiments.load_results`, so only results of the shipped weights); in the
doc they sit between ``<!-- fooled:begin -->`` and ``<!-- fooled:end -->``. A test checks the doc
holds them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from capsules.analysis.trust import markdown
from capsules.checkpoint import atomic_write_bytes
from capsules.experiments import load_results

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "experiments.md"
BEGIN, END = "<!-- fooled:begin -->\n", "<!-- fooled:end -->"


def replace_block(text: str, block: str) -> str:
    """``text`` with the lines between the markers replaced by ``block``; no markers is an error."""
    if BEGIN not in text or END not in text.split(BEGIN, 1)[1]:
        raise ValueError(f"{DOC.name} has no {BEGIN.strip()} ... {END} block")
    head, rest = text.split(BEGIN, 1)
    return head + BEGIN + block + END + rest.split(END, 1)[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--update-docs", action="store_true")
    args = p.parse_args(argv)
    results = [load_results(ROOT / "checkpoints" / f"{name}.safetensors") for name in ("capsnet-mnist", "cnn-mnist")]
    if any(r is None or "ood" not in r or "adversarial" not in r for r in results):
        print("error: the shipped CapsNet's and CNN's results need the ood and adversarial sections: run "
              "python -m capsules.experiments --sections ood,adversarial --checkpoint checkpoints/<name>.safetensors",
              file=sys.stderr)
        return 1
    table = markdown(*results)
    if not args.update_docs:
        print(table, end="")
        return 0
    atomic_write_bytes(DOC, replace_block(DOC.read_text(), table).encode())
    print(f"wrote the tables into {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
