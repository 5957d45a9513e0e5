"""capsules.zoo.docs: the generated tables in README.md and docs/, and the command that writes them."""

from __future__ import annotations

from pathlib import Path

from capsules import zoo
from capsules.checkpoint import SHIPPED
from capsules.zoo import docs

ROOT = Path(__file__).resolve().parents[2]


def test_the_docs_show_table_1_of_the_shipped_models(capsys):
    """docs/results.md's Table 1, its table of routing at inference and its table of robustness
    against the CNN are the output of python -m capsules.zoo for checkpoints/,
    and the README's table of the shipped models is that Table 1: shipping a model changes them (run
    the script with --update-docs)."""
    assert docs.main(["--checkpoints", str(SHIPPED.parent)]) == 0
    printed = capsys.readouterr().out
    blocks = docs.texts(str(SHIPPED.parent))
    assert len(blocks) == 4  # the main model and the CNN ship their experiments, outliers and attacks too
    table, routing, robust, fooled = blocks
    assert printed == "\n".join(blocks) and table.startswith(zoo.table1().markdown())
    assert routing.startswith(zoo.routing_at_inference().markdown())
    assert robust.startswith(zoo.robustness_against_cnn().markdown())
    results_md = (ROOT / "docs" / "results.md").read_text()
    for text in (table, routing, robust):
        assert text.strip() in results_md, "docs/results.md is stale: run python -m capsules.zoo --update-docs"
    assert fooled.strip() in (ROOT / "docs" / "experiments.md").read_text(), \
        "docs/experiments.md is stale: run python -m capsules.zoo --update-docs"
    readme = (ROOT / "README.md").read_text()
    assert table.strip() in readme, "README's Table 1 is stale: run python -m capsules.zoo --update-docs"


def test_table1_script_writes_the_tables_into_the_docs(tmp_path, capsys):
    """``python -m capsules.zoo --update-docs ROOT`` replaces the old tables (header row to the sentence
    under each) in ROOT/docs/results.md, and Table 1 in ROOT/README.md, and keeps everything around
    them; a file without all of its blocks is an error that writes nothing, to either file."""
    table, routing, robust, _ = docs.texts(str(SHIPPED.parent))
    (tmp_path / "docs").mkdir()
    results = tmp_path / "docs" / "results.md"
    results.write_text("# intro\n\n| Table 1 row | stale |\n|---|---|\n| old | row |\n\nWithin the noise? old.\n\n"
                       "Between.\n\n| model | trained with | stale |\n|---|---|---|\n\nAcross the zoo: old.\n\n"
                       "Then.\n\n| transform | range | stale |\n\nAgainst the CNN: old.\n\nAfter.\n")
    readme = tmp_path / "README.md"
    readme.write_text("# front\n\n| Table 1 row | stale |\n|---|---|\n\nWithin the noise? old.\n\nLinks.\n")
    expected = ("# intro\n\n" + table + "\nBetween.\n\n" + routing + "\nThen.\n\n"
                + robust + "\nAfter.\n")
    expected_readme = "# front\n\n" + table + "\nLinks.\n"
    experiments = tmp_path / "docs" / "experiments.md"
    experiments.write_text(f"# fooled\n\n{docs.FOOLED_BEGIN}\nstale\n{docs.FOOLED_END}\n\nAfter.\n")
    assert docs.main(["--checkpoints", str(SHIPPED.parent), "--update-docs", str(tmp_path)]) == 0
    assert results.read_text() == expected and "stale" not in expected
    assert experiments.read_text() == f"# fooled\n\n{docs.generated(str(SHIPPED.parent))['fooled']}\nAfter.\n"
    assert readme.read_text() == expected_readme and "stale" not in expected_readme
    assert docs.main(["--checkpoints", str(SHIPPED.parent), "--update-docs", str(tmp_path)]) == 0  # idempotent
    assert results.read_text() == expected and readme.read_text() == expected_readme
    capsys.readouterr()

    bare = tmp_path / "bare"
    (bare / "docs").mkdir(parents=True)
    (bare / "docs" / "results.md").write_text("# no table here\n")
    (bare / "README.md").write_text(expected_readme)
    assert docs.main(["--checkpoints", str(SHIPPED.parent), "--update-docs", str(bare)]) == 1
    assert "no Table 1 in docs/results.md" in capsys.readouterr().err
    assert (bare / "docs" / "results.md").read_text() == "# no table here\n"
    half = tmp_path / "half"
    (half / "docs").mkdir(parents=True)
    (half / "docs" / "results.md").write_text("| Table 1 row | stale |\n\nWithin the noise? old.\n")
    (half / "README.md").write_text("| Table 1 row | stale |\n\nWithin the noise? old.\n")
    assert docs.main(["--checkpoints", str(SHIPPED.parent), "--update-docs", str(half)]) == 1
    assert "no table of routing at inference in docs/results.md" in capsys.readouterr().err
    assert (half / "docs" / "results.md").read_text() == "| Table 1 row | stale |\n\nWithin the noise? old.\n"
    assert (half / "README.md").read_text() == "| Table 1 row | stale |\n\nWithin the noise? old.\n"
    front = tmp_path / "front"
    (front / "docs").mkdir(parents=True)
    (front / "docs" / "results.md").write_text(expected)
    (front / "README.md").write_text("# no table here\n")
    assert docs.main(["--checkpoints", str(SHIPPED.parent), "--update-docs", str(front)]) == 1
    assert "no Table 1 in README.md" in capsys.readouterr().err
    assert (front / "README.md").read_text() == "# no table here\n"
