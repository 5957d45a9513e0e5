"""capsules.zoo.table1: the paper's Table 1 and the shipped models set beside its rows."""

from __future__ import annotations

from capsules import zoo
from tests.zoo.helpers import fake


def test_the_papers_table_1():
    """As printed in Sabour et al. (2017), Table 1 (see ../shared/reference/capsnet-paper.md)."""
    rows = {(r.kind, r.iterations, r.reconstruction): (r.mnist, r.mnist_std, r.multimnist) for r in zoo.PAPER}
    assert rows == {("cnn", None, None): (0.39, None, 8.1), ("capsnet", 1, False): (0.34, 0.032, None),
                    ("capsnet", 1, True): (0.29, 0.011, 7.5), ("capsnet", 3, False): (0.35, 0.036, None),
                    ("capsnet", 3, True): (0.25, 0.005, 5.2)}


def test_table_1_sets_each_model_beside_its_row_and_marks_the_rest(folder):
    fake(folder, "capsnet-mnist-r3", iterations=3, recon=0.0005, correct=9950)  # a second r = 3 with reconstruction
    table = zoo.table1(zoo.list_shipped(folder))
    cells = [(r["Table 1 row"], r["data set"], r["paper: error"], r["this project: model"]) for r in table.records()]
    assert cells == [
        ("baseline CNN", "MNIST", "0.39%", "cnn-mnist"),
        ("CapsNet, r = 1, no reconstruction", "MNIST", "0.34% ± 0.032", zoo.PENDING),
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
    assert md[0] == "| " + " | ".join(zoo.COLUMNS) + " |" and len(md) == 2 + len(cells)
    assert md[3] == "| CapsNet, r = 1, no reconstruction | MNIST | 0.34% ± 0.032 | training | – | – | – |"


def test_table_1_with_nothing_shipped_invents_nothing(tmp_path):
    table = zoo.table1([])
    assert [r["this project: model"] for r in table.records()] == [zoo.PENDING] * 5
    assert table.noise == "MNIST: no measured row, nothing to compare yet."


def test_the_noise_statement_follows_the_intervals(tmp_path):
    fake(tmp_path, "capsnet-mnist", correct=9956)  # 0.44% [0.33, 0.59]
    fake(tmp_path, "capsnet-mnist-r1", iterations=1, correct=9946)  # 0.54% [0.41, 0.70]
    models = zoo.list_shipped(tmp_path)
    one = zoo.table1(models[:1]).noise
    assert one == "MNIST: one measured row (capsnet-mnist), nothing to compare yet."
    both = zoo.table1(models).noise
    assert both == ("MNIST: the 95% intervals of both measured rows (capsnet-mnist-r1, capsnet-mnist) overlap: "
                    "every difference between them is within the noise of 10,000 test images.")
    fake(tmp_path, "cnn-mnist", kind="cnn", correct=9900)  # 1.00% [0.82, 1.21]: apart from both
    table = zoo.table1(zoo.list_shipped(tmp_path))
    within, beyond = table.pairs("mnist")
    assert [(x.name, y.name) for x, y in within] == [("capsnet-mnist-r1", "capsnet-mnist")]
    assert [(x.name, y.name) for x, y in beyond] == [("cnn-mnist", "capsnet-mnist-r1"), ("cnn-mnist", "capsnet-mnist")]
    assert table.noise == ("MNIST: beyond the noise (95% intervals apart): cnn-mnist (1.00%) and each of "
                           "capsnet-mnist-r1 (0.54%), capsnet-mnist (0.44%). Within the noise (intervals "
                           "overlap): capsnet-mnist-r1 (0.54%) and capsnet-mnist (0.44%).")
    fake(tmp_path, "capsnet-mnist-r3", correct=9950)  # 0.50%: three CapsNets overlap pairwise
    assert zoo.table1(zoo.list_shipped(tmp_path)).noise.endswith(
        "Within the noise: the intervals of capsnet-mnist-r1, capsnet-mnist, capsnet-mnist-r3 overlap pairwise.")
    (tmp_path / "capsnet-mnist-r3.json").unlink()
    fake(tmp_path, "capsnet-mnist-r1", iterations=1, correct=9990)  # 0.10%: now apart from capsnet-mnist too
    assert "No two measured rows are within the noise of each other." in zoo.table1(zoo.list_shipped(tmp_path)).noise
