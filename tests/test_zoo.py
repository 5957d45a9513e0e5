"""capsules.zoo: the shipped models listed from their JSONs, and the paper's Table 1 beside them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from capsules import zoo as Z
from capsules.zoo import docs
from capsules.checkpoint import SHIPPED

ROOT = Path(__file__).resolve().parents[1]


def fake(folder: Path, name: str, *, kind: str = "capsnet", iterations: int | None = 3, recon: float | None = 0.0005,
         correct: int = 9956, total: int = 10000, epoch: int = 10, dataset: str | None = None,
         weights_dtype: str | None = "fp16") -> Path:
    """A shipped model as the listing sees it: a JSON as capsules.ship writes it, beside a
    .safetensors file whose bytes are never read."""
    path = folder / f"{name}.safetensors"
    path.write_bytes(b"weights are not read by the listing")
    trained = {"epochs": epoch, "seed": 0}
    if kind == "capsnet":
        trained.update(iterations=iterations, reconstruction_weight=recon)
    else:
        trained["model"] = "cnn"
    if dataset is not None:
        trained["dataset"] = dataset
    info = {"test_accuracy": round(100 * correct / total, 4), "test_correct": correct, "test_total": total,
            "epoch": epoch, "epochs": epoch, "train_seconds": 5400.0, "hardware": "CPU: test, 2 threads",
            "train_config": trained, "format": {"capsnet": "capsules.capsnet", "cnn": "capsules.baseline-cnn"}[kind],
            "config": {"routing_iterations": 3} if kind == "capsnet" else {}, "weights": path.name}
    if weights_dtype is not None:
        info["weights_dtype"] = weights_dtype
    if dataset is not None:
        info["dataset"] = dataset
    path.with_suffix(".json").write_text(json.dumps(info))
    return path


@pytest.fixture()
def folder(tmp_path):
    fake(tmp_path, "capsnet-mnist", iterations=3, recon=0.0005, correct=9956, epoch=29, weights_dtype=None)
    fake(tmp_path, "capsnet-mnist-r1", iterations=1, recon=0.0005, correct=9946)
    fake(tmp_path, "capsnet-mnist-r3-norecon", iterations=3, recon=0.0, correct=9900)
    fake(tmp_path, "cnn-mnist", kind="cnn", correct=9940, weights_dtype="fp32")
    fake(tmp_path, "capsnet-multimnist", iterations=3, correct=9400, dataset="multimnist")
    (tmp_path / "stray.safetensors").write_bytes(b"no JSON beside it")
    (tmp_path / "other.safetensors").write_bytes(b"")
    (tmp_path / "other.json").write_text(json.dumps({"format": "someone.else"}))
    (tmp_path / "broken.safetensors").write_bytes(b"")
    (tmp_path / "broken.json").write_text("{not json")
    return tmp_path


def by_name(models):
    return {m.name: m for m in models}


def test_listing_reads_each_models_json(folder):
    models = Z.list_shipped(folder)
    assert [m.name for m in models] == ["capsnet-mnist", "capsnet-mnist-r1", "capsnet-mnist-r3-norecon",
                                        "capsnet-multimnist", "cnn-mnist"]  # by name; no JSON, no model kind: left out
    m = by_name(models)
    main, r1, norecon, cnn, multi = (m[k] for k in ("capsnet-mnist", "capsnet-mnist-r1", "capsnet-mnist-r3-norecon",
                                                    "cnn-mnist", "capsnet-multimnist"))
    assert (main.kind, main.dataset, main.iterations, main.reconstruction_weight, main.epochs) == \
        ("capsnet", "mnist", 3, 0.0005, 29)
    assert (main.correct, main.total, main.accuracy, main.weights_dtype) == (9956, 10000, 99.56, "fp32")
    assert main.path == folder / "capsnet-mnist.safetensors" and main.hardware == "CPU: test, 2 threads"
    assert (r1.iterations, r1.reconstruction, r1.weights_dtype) == (1, True, "fp16")
    assert (norecon.iterations, norecon.reconstruction_weight, norecon.reconstruction) == (3, 0.0, False)
    assert (cnn.kind, cnn.iterations, cnn.reconstruction_weight, cnn.reconstruction) == ("cnn", None, None, None)
    assert (multi.kind, multi.dataset) == ("capsnet", "multimnist")
    assert main.recipe == "r = 3, with reconstruction" and norecon.recipe == "r = 3, no reconstruction"
    assert cnn.recipe == "baseline CNN"
    assert r1.label == "capsnet-mnist-r1 · r = 1, with reconstruction, 10 epochs, 99.46%"
    assert r1.short_label == "r1 + recon · 10 ep · 99.46%" and cnn.short_label.startswith("CNN · ")
    assert norecon.short_label.startswith("r3 no recon · ")


def test_listing_follows_the_environment_and_tolerates_an_empty_folder(folder, tmp_path_factory, monkeypatch):
    monkeypatch.setenv(Z.CHECKPOINT_DIR, str(folder))
    assert Z.checkpoints_dir() == folder and len(Z.list_shipped()) == 5
    monkeypatch.delenv(Z.CHECKPOINT_DIR)
    assert Z.checkpoints_dir() == SHIPPED.parent
    assert Z.list_shipped(tmp_path_factory.mktemp("empty")) == []


def test_iterations_fall_back_to_the_config_and_unrecorded_figures_are_none(tmp_path):
    path = tmp_path / "capsnet-mnist-old.safetensors"
    path.write_bytes(b"")
    path.with_suffix(".json").write_text(json.dumps({"format": "capsules.capsnet", "config": {"routing_iterations": 2}}))
    (m,) = Z.list_shipped(tmp_path)
    assert (m.iterations, m.reconstruction_weight, m.reconstruction, m.epochs) == (2, None, None, None)
    assert m.error is None and m.error_interval is None and m.weights_dtype == "fp32"
    assert m.recipe == "r = 2, reconstruction not recorded"


def test_a_warm_start_from_another_data_set_counts_only_this_data_sets_runs():
    """A MultiMNIST CapsNet warm-started from the MNIST one: its epochs and time are its own runs'
    (the MNIST epochs are not MultiMNIST epochs), and its recipe names the weights it started from;
    a further MultiMNIST run from it counts both MultiMNIST runs."""
    mnist = {"path": "checkpoints/capsnet-mnist.safetensors", "epoch": 11, "train_seconds": 8000.0,
             "train_config": {"dataset": "mnist"}, "init_from": {"epoch": 29, "train_seconds": 14000.0}}
    first = {"format": "capsules.capsnet", "epoch": 4, "train_seconds": 5000.0, "hardware": "CPU: X",
             "train_config": {"dataset": "multimnist", "iterations": 3, "reconstruction_weight": 5e-4},
             "init_from": mnist}
    m = Z.Shipped.of("capsnet-multimnist.safetensors", first)
    assert (m.dataset, m.epochs, m.epochs_text, m.train_seconds, len(m.stages)) == ("multimnist", 4, "4", 5000.0, 1)
    assert m.pretrained == "capsnet-mnist" and m.recipe == "r = 3, with reconstruction, from capsnet-mnist's weights"
    further = {**first, "epoch": 2, "train_seconds": 2000.0,
               "init_from": {"path": "checkpoints/capsnet-multimnist.safetensors", **first}}
    m = Z.Shipped.of("capsnet-multimnist.safetensors", further)
    assert (m.epochs_text, m.train_seconds, m.pretrained) == ("6 (4 + 2)", 7000.0, "capsnet-mnist")
    plain = Z.Shipped.of("capsnet-mnist.safetensors", {**mnist, "format": "capsules.capsnet"})
    assert plain.pretrained is None and plain.epochs_text == "40 (29 + 11)"


def test_error_and_its_wilson_interval(folder):
    m = by_name(Z.list_shipped(folder))["capsnet-mnist"]
    assert m.errors == 44 and m.error == pytest.approx(0.44)
    lo, hi = m.error_interval  # 95% Wilson score interval of 44 in 10,000, computed by hand
    assert lo == pytest.approx(0.32794, abs=1e-4) and hi == pytest.approx(0.59012, abs=1e-4)


def test_the_papers_table_1():
    """As printed in Sabour et al. (2017), Table 1 (see ../shared/reference/capsnet-paper.md)."""
    rows = {(r.kind, r.iterations, r.reconstruction): (r.mnist, r.mnist_std, r.multimnist) for r in Z.PAPER}
    assert rows == {("cnn", None, None): (0.39, None, 8.1), ("capsnet", 1, False): (0.34, 0.032, None),
                    ("capsnet", 1, True): (0.29, 0.011, 7.5), ("capsnet", 3, False): (0.35, 0.036, None),
                    ("capsnet", 3, True): (0.25, 0.005, 5.2)}


def test_table_1_sets_each_model_beside_its_row_and_marks_the_rest(folder):
    fake(folder, "capsnet-mnist-r3", iterations=3, recon=0.0005, correct=9950)  # a second r = 3 with reconstruction
    table = Z.table1(Z.list_shipped(folder))
    cells = [(r["Table 1 row"], r["data set"], r["paper: error"], r["this project: model"]) for r in table.records()]
    assert cells == [
        ("baseline CNN", "MNIST", "0.39%", "cnn-mnist"),
        ("CapsNet, r = 1, no reconstruction", "MNIST", "0.34% ± 0.032", Z.PENDING),
        ("CapsNet, r = 1, with reconstruction", "MNIST", "0.29% ± 0.011", "capsnet-mnist-r1"),
        ("CapsNet, r = 3, no reconstruction", "MNIST", "0.35% ± 0.036", "capsnet-mnist-r3-norecon"),
        ("CapsNet, r = 3, with reconstruction", "MNIST", "0.25% ± 0.005", "capsnet-mnist-r3"),  # 10 epochs first
        ("CapsNet, r = 3, with reconstruction", "MNIST", "0.25% ± 0.005", "capsnet-mnist"),  # then 29
        ("CapsNet, r = 3, with reconstruction", "MultiMNIST", "5.2%", "capsnet-multimnist"),
    ]
    main = table.records()[5]
    assert main["error [95% interval]"] == "0.44% [0.33, 0.59] (44/10,000)"
    assert main["epochs"] == "29" and main["training"] == "1.5 h on CPU: test, 2 threads"
    pending = table.records()[1]
    assert pending["error [95% interval]"] == pending["epochs"] == pending["training"] == "–"
    md = table.markdown().splitlines()
    assert md[0] == "| " + " | ".join(Z.COLUMNS) + " |" and len(md) == 2 + len(cells)
    assert md[3] == "| CapsNet, r = 1, no reconstruction | MNIST | 0.34% ± 0.032 | training | – | – | – |"


def test_table_1_with_nothing_shipped_invents_nothing(tmp_path):
    table = Z.table1([])
    assert [r["this project: model"] for r in table.records()] == [Z.PENDING] * 5
    assert table.noise == "MNIST: no measured row, nothing to compare yet."


def test_the_noise_statement_follows_the_intervals(tmp_path):
    fake(tmp_path, "capsnet-mnist", correct=9956)  # 0.44% [0.33, 0.59]
    fake(tmp_path, "capsnet-mnist-r1", iterations=1, correct=9946)  # 0.54% [0.41, 0.70]
    models = Z.list_shipped(tmp_path)
    one = Z.table1(models[:1]).noise
    assert one == "MNIST: one measured row (capsnet-mnist), nothing to compare yet."
    both = Z.table1(models).noise
    assert both == ("MNIST: the 95% intervals of both measured rows (capsnet-mnist-r1, capsnet-mnist) overlap: "
                    "every difference between them is within the noise of 10,000 test images.")
    fake(tmp_path, "cnn-mnist", kind="cnn", correct=9900)  # 1.00% [0.82, 1.21]: apart from both
    table = Z.table1(Z.list_shipped(tmp_path))
    within, beyond = table.pairs("mnist")
    assert [(x.name, y.name) for x, y in within] == [("capsnet-mnist-r1", "capsnet-mnist")]
    assert [(x.name, y.name) for x, y in beyond] == [("cnn-mnist", "capsnet-mnist-r1"), ("cnn-mnist", "capsnet-mnist")]
    assert table.noise == ("MNIST: beyond the noise (95% intervals apart): cnn-mnist (1.00%) and each of "
                           "capsnet-mnist-r1 (0.54%), capsnet-mnist (0.44%). Within the noise (intervals "
                           "overlap): capsnet-mnist-r1 (0.54%) and capsnet-mnist (0.44%).")
    fake(tmp_path, "capsnet-mnist-r3", correct=9950)  # 0.50%: three CapsNets overlap pairwise
    assert Z.table1(Z.list_shipped(tmp_path)).noise.endswith(
        "Within the noise: the intervals of capsnet-mnist-r1, capsnet-mnist, capsnet-mnist-r3 overlap pairwise.")
    (tmp_path / "capsnet-mnist-r3.json").unlink()
    fake(tmp_path, "capsnet-mnist-r1", iterations=1, correct=9990)  # 0.10%: now apart from capsnet-mnist too
    assert "No two measured rows are within the noise of each other." in Z.table1(Z.list_shipped(tmp_path)).noise


def test_the_shipped_checkpoints_are_listed():
    m = by_name(Z.list_shipped())
    main = m["capsnet-mnist"]
    assert (main.kind, main.dataset, main.iterations, main.reconstruction_weight) == ("capsnet", "mnist", 3, 0.0005)
    assert main.path == SHIPPED and main.correct == json.loads(SHIPPED.with_suffix(".json").read_text())["test_correct"]
    r1 = m["capsnet-mnist-r1"]
    assert (r1.kind, r1.iterations, r1.reconstruction, r1.weights_dtype, r1.epochs) == ("capsnet", 1, True, "fp16", 10)


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
    assert printed == "\n".join(blocks) and table.startswith(Z.table1().markdown())
    assert routing.startswith(Z.routing_at_inference().markdown())
    assert robust.startswith(Z.robustness_against_cnn().markdown())
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


def fake_results(path: Path, correct: dict[int, int], *, random: float = 99.5, class_mean: float = 99.0,
                 sha: str | None = None, paired: dict[int, tuple[int, int]] | None = None) -> None:
    """Test-set experiments beside a fake shipped model, as capsules.experiments writes them."""
    import hashlib

    from capsules import experiments as E

    results = {"format": E.FORMAT, "version": E.VERSION, "kind": "capsules.capsnet", "test_images": 10000,
               "checkpoint_sha256": sha or hashlib.sha256(path.read_bytes()).hexdigest(),
               "iterations_correct": {str(k): correct.get(k, 9900) for k in range(1, 11)},
               "ablations": {"random": {"accuracy": random}, "class_mean": {"accuracy": class_mean}}}
    if paired is not None:  # right answers turned wrong, wrong ones right, against k = 1
        results["dynamics"] = {"right_to_wrong_from_k1": [paired.get(k, (0, 0))[0] for k in range(1, 11)],
                               "wrong_to_right_from_k1": [paired.get(k, (0, 0))[1] for k in range(1, 11)]}
    E.results_path(path).write_text(json.dumps(results))


def test_routing_at_inference_across_the_zoo(tmp_path):
    fake_results(fake(tmp_path, "capsnet-mnist", epoch=29), {1: 9960, 3: 9956, 10: 9950})
    fake_results(fake(tmp_path, "capsnet-mnist-r3", epoch=10), {1: 9950, 3: 9951, 10: 9900})  # routing ahead
    fake_results(fake(tmp_path, "capsnet-mnist-r1", iterations=1), {1: 9946, 3: 9942, 10: 9902},
                 random=99.46, class_mean=99.46)
    fake(tmp_path, "capsnet-mnist-r1-norecon", iterations=1, recon=0.0)  # no results: left out
    fake_results(fake(tmp_path, "capsnet-mnist-r3-norecon", recon=0.0), {1: 9943}, sha="0" * 64)  # other weights
    fake(tmp_path, "cnn-mnist", kind="cnn")
    fake_results(fake(tmp_path, "capsnet-multimnist", dataset="multimnist"), {1: 6000})
    table = Z.routing_at_inference(Z.list_shipped(tmp_path))
    assert [m.name for m, _ in table.models] == ["capsnet-mnist-r1", "capsnet-mnist-r3", "capsnet-mnist"]
    rows = table.records()
    assert rows[0] == {"model": "capsnet-mnist-r1", "trained with": "r = 1, with reconstruction", "epochs": "10",
                       "k = 1 (uniform c)": "99.46% (own)", "k = 3": "99.42%", "k = 10": "99.02%",
                       "random c": "99.46%", "class-mean c": "99.46%"}
    assert rows[2]["k = 3"] == "99.56% (own)" and rows[2]["k = 1 (uniform c)"] == "99.60%" and rows[2]["epochs"] == "29"
    md = table.markdown().splitlines()
    assert md[0] == "| " + " | ".join(Z.ROUTING_COLUMNS) + " |" and len(md) == 5
    summary = table.summary
    assert ("Trained with r = 1 (capsnet-mnist-r1): k = 3 at inference, more than trained with, against their own "
            "k = 1: \u22120.04 points (routing ahead in 0 of 1); the difference is within the noise") in summary
    # 99.02% [98.81, 99.20] against 99.46% [99.31, 99.58]: apart
    assert "k = 10 against k = 1: \u22120.44 points (routing ahead in 0 of 1); beyond the noise (95% intervals " \
           "apart) for capsnet-mnist-r1." in summary
    assert ("Trained with r = 3 (capsnet-mnist-r3, capsnet-mnist): own routing (k = 3) against uniform coupling "
            "(k = 1): +0.01, \u22120.04 points (routing ahead in 1 of 2); every difference is within the noise"
            ) in summary
    assert ("k = 10 against k = 1: \u22120.50, \u22120.10 points (routing ahead in 0 of 2); beyond the noise (95% "
            "intervals apart) for capsnet-mnist-r3, within it for capsnet-mnist.") in summary
    assert Z.routing_at_inference([]).summary == "No shipped MNIST CapsNet has its test-set experiments yet."


def test_routing_at_inference_judges_the_noise_on_the_changed_predictions(tmp_path):
    """With the changed predictions recorded, routing against k = 1 is a paired comparison: an
    exact McNemar test judges it. 10 right answers turned wrong and none right (p = 0.002) is
    beyond the noise even where the two accuracies' intervals overlap."""
    fake_results(fake(tmp_path, "capsnet-mnist", epoch=29), {1: 9960, 3: 9956, 10: 9950},
                 paired={3: (4, 0), 10: (10, 0)})
    fake_results(fake(tmp_path, "capsnet-mnist-r3"), {1: 9950, 3: 9946, 10: 9946}, paired={3: (6, 2), 10: (5, 1)})
    summary = Z.routing_at_inference(Z.list_shipped(tmp_path)).summary
    assert ("own routing (k = 3) against uniform coupling (k = 1): \u22120.04, \u22120.04 points (routing ahead in 0 "
            "of 2); changed predictions, right \u2192 wrong / wrong \u2192 right: 6/2, 4/0 (exact McNemar p = 0.29, "
            "0.12); every difference is within the noise (p \u2265 0.05).") in summary
    assert ("k = 10 against k = 1: \u22120.04, \u22120.10 points (routing ahead in 0 of 2); changed predictions, right "
            "\u2192 wrong / wrong \u2192 right: 5/1, 10/0 (exact McNemar p = 0.22, 0.002); beyond the noise "
            "(p < 0.05) for capsnet-mnist, within it for capsnet-mnist-r3.") in summary
    # one model without the changed predictions (results computed before they were recorded): intervals for all
    fake_results(fake(tmp_path, "capsnet-mnist-r3-norecon", recon=0.0), {1: 9943, 3: 9939})
    assert "(95% intervals overlap)" in Z.routing_at_inference(Z.list_shipped(tmp_path)).summary


def fake_robustness(path: Path, hits: dict[str, list[list[bool]]], *, kind: str = "capsules.capsnet",
                    counts: bool = True, seed: int = 0) -> None:
    """Robustness results beside a fake shipped model from ``hits[transform][digit][point]``: the
    curve is each point's share of digits right, the per-image counts each digit's points right."""
    import hashlib

    from capsules import experiments as E
    from capsules.analysis.transforms import TRANSFORMS

    values = {"rotate": [-10.0, 0.0, 10.0], "scale": [0.9, 1.0, 1.1], "shear": [-10.0, 0.0, 10.0],
              "shift_x": [-2.0, 0.0, 2.0]}
    n = len(next(iter(hits.values())))
    results = {"format": E.FORMAT, "version": E.VERSION, "kind": kind, "test_images": 10000,
               "checkpoint_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
               "robustness": {k: [[v, 100 * sum(d[i] for d in hits[k]) / n] for i, v in enumerate(values[k])]
                              for k in values},
               "robustness_subset": n, "robustness_seed": seed, "robustness_units": {k: TRANSFORMS[k].unit for k in values}}
    if counts:
        results["robustness_right"] = {k: [sum(d) for d in hits[k]] for k in values}
    E.results_path(path).write_text(json.dumps(results))


def test_robustness_against_the_cnn_tests_each_transform_on_the_same_digits(tmp_path):
    """Per transform: the range each model keeps at 95% or more, the ends, the means, the digits
    each gets right at more points and the paired test; ahead, behind and within, each said."""
    import math
    every, none, middle = [True] * 3, [False] * 3, [False, True, False]  # middle: the identity
    n = 40
    capsnet = {"rotate": [every] * 20 + [middle] * 20,  # ahead on 20 digits, behind on none
               "scale": [middle] * 12 + [every] * 28,  # behind on 12
               "shear": [every] * 3 + [none] * 2 + [every] * 35,  # 3 against 2: within the noise
               "shift_x": [every] * n}
    cnn = {"rotate": [middle] * n, "scale": [every] * n, "shear": [none] * 3 + [every] * 2 + [every] * 35,
           "shift_x": [every] * n}
    main, other = fake(tmp_path, "capsnet-mnist", epoch=29), fake(tmp_path, "cnn-mnist", kind="cnn")
    fake_robustness(main, capsnet)
    assert Z.robustness_against_cnn(Z.list_shipped(tmp_path)).cnn is None  # the CNN has no results yet
    assert "no baseline CNN is shipped with robustness curves" in Z.robustness_against_cnn(
        Z.list_shipped(tmp_path)).summary
    fake_robustness(other, cnn, kind="capsules.baseline-cnn")
    found = Z.robustness_against_cnn(Z.list_shipped(tmp_path))
    assert found.capsnet[0].name == "capsnet-mnist" and found.cnn[0].name == "cnn-mnist"
    md = found.markdown().splitlines()
    assert md[0] == ("| transform | range | capsnet-mnist: \u2265 95% for | cnn-mnist: \u2265 95% for | capsnet-mnist: "
                     "at the ends | cnn-mnist: at the ends | mean over the curve | digits right at more points: "
                     "CapsNet / CNN (paired test) |")
    # per-digit differences: rotate 20 x 2 and 20 x 0 (z = sqrt(39)); scale 12 x -2 and 28 x 0
    p20 = math.erfc(math.sqrt(39) / math.sqrt(2))
    p12 = math.erfc(0.6 / math.sqrt((12 * 1.4**2 + 28 * 0.6**2) / 39 / 40) / math.sqrt(2))
    p_shear = math.erfc(0.075 / math.sqrt((3 * 2.925**2 + 2 * 3.075**2 + 35 * 0.075**2) / 39 / 40) / math.sqrt(2))
    assert md[2] == (f"| rotation (degrees, counter-clockwise) | \u221210 \u2026 10 | 0 \u2026 0 | 0 \u2026 0 | "
                     f"50.0% at \u221210, 50.0% at 10 | 0.0% at \u221210, 0.0% at 10 | 66.7% / 33.3% | 20 / 0 "
                     f"(p = {p20:.2g}) |")
    assert md[3].endswith(f"| 80.0% / 100.0% | 0 / 12 (p = {p12:.2g}) |") and "| 0.9 \u2026 1.1 |" in md[3]
    assert md[4].endswith(f"| 3 / 2 (p = {p_shear:.2g}) |") and md[5].endswith("| 100.0% / 100.0% | 0 / 0 (p = 1) |")
    summary = found.summary
    assert summary.startswith("capsnet-mnist against cnn-mnist on the same 40 test digits (seed 0)")
    assert f"The CapsNet is ahead beyond the noise under rotation (66.7% against 33.3%, p = {p20:.2g})" in summary
    assert f"the CNN is ahead beyond the noise under scale (80.0% against 100.0%, p = {p12:.2g})" in summary
    assert (f"the difference is within the noise under shear (95.0% against 92.5%, p = {p_shear:.2g}), horizontal "
            "shift (100.0% against 100.0%, p = 1).") in summary

    fake_robustness(other, cnn, kind="capsules.baseline-cnn", counts=False)  # computed before the counts
    old = Z.robustness_against_cnn(Z.list_shipped(tmp_path))
    assert "not recorded" in old.markdown() and "the difference is not tested" in old.summary
    fake_robustness(other, cnn, kind="capsules.baseline-cnn", seed=1)  # other digits: not compared
    assert Z.robustness_against_cnn(Z.list_shipped(tmp_path)).cnn is None
    main.with_suffix(".experiments.json").unlink()
    assert Z.robustness_against_cnn(Z.list_shipped(tmp_path)) is None  # no results for the main model
