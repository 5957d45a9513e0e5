"""Print the paper's Table 1 beside the shipped models, routing at inference across them, the main
CapsNet's experiments and its robustness against the baseline CNN, as the markdown of docs/results.md.

    python -m capsules.zoo                      # checkpoints/ (or $CAPSULES_CHECKPOINT_DIR)
    python -m capsules.zoo --checkpoints DIR
    python -m capsules.zoo --update-docs        # and write them into docs/results.md (Table 1 into README.md too)

The table and the sentence under it come from :func:`capsules.zoo.table1`, as on the dashboard's
experiments page: each shipped model's test error with its 95% Wilson interval, epochs, training
time and hardware, read from the JSONs beside the weights (nothing is evaluated); a row no shipped
model matches yet says "training". ``--update-docs`` replaces the table in docs/results.md and in
README.md, whose table of the shipped models it is (from its header row to its "Within the noise?"
line). Then, in docs/results.md only, the same for the table of routing at inference across the
shipped MNIST CapsNets (:func:`capsules.zoo.routing_at_inference`, from their experiments results;
from its header row to its "Across the zoo:" line), and for the table of robustness to affine transforms, the main CapsNet's beside the
baseline CNN's (:func:`capsules.zoo.robustness_against_cnn`; from its header row to its "Against the
CNN:" line); and in docs/experiments.md the tables of "Can it be fooled?"
(:func:`capsules.analysis.trust.markdown` of the main CapsNet's and the CNN's ``ood`` and
``adversarial`` results; between its ``<!-- fooled:begin -->`` and ``<!-- fooled:end -->`` lines).
Each file is written atomically, and only when every block was found in every file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..analysis.trust import markdown as trust_markdown
from ..checkpoint import atomic_write_bytes
from ..experiments import load_results
from .comparisons import main_model, robustness_against_cnn, routing_at_inference
from .shipped import list_shipped
from .table1 import table1

ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path("docs") / "results.md"  # every generated block, relative to the repository
README = Path("README.md")  # the blocks of FRONT
FRONT = ("table1",)  # the README's table of the shipped models
HEADER = "| Table 1 row |"
NOISE = "Within the noise? "
ROUTING_HEADER = "| model | trained with |"
ROUTING_SUMMARY = "Across the zoo: "
ROBUSTNESS_HEADER = "| transform | range |"
ROBUSTNESS_SUMMARY = "Against the CNN: "
EXPERIMENTS = Path("docs") / "experiments.md"  # the tables of "Can it be fooled?"
FOOLED_BEGIN, FOOLED_END = "<!-- fooled:begin -->", "<!-- fooled:end -->"


def replace_table(text: str, new: str, header: str = HEADER, last: str = NOISE, what: str = "Table 1",
                  where: str = "the file") -> str:
    """``text`` (the markdown file ``where``) with a generated table (the lines from the one starting
    with ``header`` to the line starting with ``last``) replaced by ``new``; a file without one is an
    error."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.startswith(header)), None)
    end = next((i for i in range(start or 0, len(lines)) if lines[i].startswith(last)), None)
    if start is None or end is None:
        raise ValueError(f"no {what} in {where} (a line starting with {header!r}, then one with {last!r})")
    return "".join(lines[:start]) + new.rstrip("\n") + "\n" + "".join(lines[end + 1:])


BLOCKS = {"table1": (HEADER, NOISE, "Table 1"),
          "routing": (ROUTING_HEADER, ROUTING_SUMMARY, "table of routing at inference"),
          "robustness": (ROBUSTNESS_HEADER, ROBUSTNESS_SUMMARY, "table of robustness"),
          "fooled": (FOOLED_BEGIN, FOOLED_END, "tables of Can it be fooled?")}
FILES = {RESULTS: ("table1", "routing", "robustness"), README: FRONT, EXPERIMENTS: ("fooled",)}  # blocks by file


def generated(folder: str | None = None) -> dict[str, str]:
    """The generated blocks of docs/results.md by name (:data:`BLOCKS`): Table 1 and the routing
    table, each with its sentence; the robustness table when the main CapsNet's experiments results
    hold robustness curves."""
    models = list_shipped(folder)
    table, routing = table1(models), routing_at_inference(models)
    found = {"table1": f"{table.markdown()}\n\n{NOISE}{table.noise}\n",
             "routing": f"{routing.markdown()}\n\n{ROUTING_SUMMARY}{routing.summary}\n"}
    main = main_model(models)  # the main model's results read once
    robust = robustness_against_cnn(models, main)
    if robust is not None:
        found["robustness"] = f"{robust.markdown()}\n\n{ROBUSTNESS_SUMMARY}{robust.summary}\n"
    cnn = next((load_results(m.path) for m in models if m.kind == "cnn" and m.dataset == "mnist"), None)
    if main is not None and cnn is not None and all("ood" in r and "adversarial" in r for r in (main[1], cnn)):
        found["fooled"] = f"{FOOLED_BEGIN}\n{trust_markdown(main[1], cnn)}{FOOLED_END}\n"
    return found


def texts(folder: str | None = None) -> tuple[str, ...]:
    """The blocks of :func:`generated`, in the order of :data:`BLOCKS`."""
    return tuple(generated(folder).values())


def updated(root: Path, blocks: dict[str, str]) -> dict[Path, tuple[str, str]]:
    """For each file of :data:`FILES` under ``root`` that has blocks in ``blocks``: the file's text
    now and with those blocks replaced; a missing file or block is an error."""
    found = {}
    for name, names in FILES.items():
        names = [b for b in names if b in blocks]
        if not names:
            continue
        path = root / name
        new = old = path.read_text()
        for block in names:
            header, last, what = BLOCKS[block]
            new = replace_table(new, blocks[block], header, last, what, where=name.as_posix())
        found[path] = old, new
    return found


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m capsules.zoo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoints", default=None,
                        help="folder of the shipped models (default: $CAPSULES_CHECKPOINT_DIR, else checkpoints/)")
    parser.add_argument("--update-docs", nargs="?", const=ROOT, type=Path, default=None, metavar="ROOT",
                        help=f"also write the tables into {RESULTS.as_posix()} and Table 1 into {README} under "
                             "this folder in place of the old ones (default: this repository)")
    args = parser.parse_args(argv)
    blocks = generated(args.checkpoints)
    print("\n".join(blocks.values()), end="")
    if args.update_docs is not None:
        try:
            files = updated(args.update_docs, blocks)  # every file read and checked before any is written
        except (OSError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        for path, (old, new) in files.items():
            changed = new != old
            if changed:
                atomic_write_bytes(path, new.encode())
            state = "updated" if changed else "already up to date"
            print(f"{path}: the generated tables {state}", file=sys.stderr)
    return 0
