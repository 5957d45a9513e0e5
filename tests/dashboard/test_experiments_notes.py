"""dashboard/figures/experiments_notes.py: the sentences of the experiments page, built
from the results (never typed in): change a number and the verdict follows."""

from __future__ import annotations

import copy
import re

import numpy as np

from dashboard.figures import experiments_notes


def test_notes_follow_the_numbers(shipped_results):
    """The sentences are built from the results: change a number and the verdict follows."""
    r = copy.deepcopy(shipped_results)
    # image by image, with the changed predictions recorded: McNemar's exact test on them
    r["dynamics"]["right_to_wrong_from_k1"] = [0, 0, 9, *[0] * 7]
    r["dynamics"]["wrong_to_right_from_k1"] = [0, 0, 1, *[0] * 7]
    r["dynamics"]["changed_from_k1"][2] = 0.11  # 11 of 10,000: 9 + 1, and one wrong answer into another
    assert ("11 of 10,000 predictions differ between k = 1 and k = 3: 9 turn a right answer into a wrong one, 1 a "
            "wrong answer into a right one (1 one wrong answer into another); McNemar's exact test on them, "
            "p = 0.021: beyond the noise") in experiments_notes.iterations_notes(r, 3).here
    r["dynamics"]["right_to_wrong_from_k1"][2] = 5
    assert "5 turn a right answer into a wrong one, 1 a wrong answer into a right one (5 one wrong answer into " \
        "another); McNemar's exact test on them, p = 0.22: within the noise" in experiments_notes.iterations_notes(r, 3).here

    # results computed before the changed predictions were recorded: what the counts tell
    r = copy.deepcopy(shipped_results)
    for key in ("right_to_wrong_from_k1", "wrong_to_right_from_k1"):
        r["dynamics"].pop(key, None)
    iv = experiments_notes.iteration_intervals(r)
    here = experiments_notes.iterations_notes(r, 3).here
    assert f"k = 1 (uniform coupling): {r['iterations']['1']:.2f}% [{iv[0, 0]:.2f}, {iv[0, 1]:.2f}]" in here
    changed = round(r["dynamics"]["changed_from_k1"][2] * r["test_images"] / 100)
    assert f"{changed} of 10,000 predictions differ between k = 1 and k = 3" in here
    net = r["iterations_correct"]["3"] - r["iterations_correct"]["1"]
    assert ("turn a right answer into a wrong one" in here) == (changed > 0 and net == -changed)
    assert changed > 0
    k1, k3 = r["iterations_correct"]["1"], r["iterations_correct"]["3"]
    r["iterations_correct"]["1"] = k3 - changed  # k = 3 ahead by every change: each fixed an answer
    assert f"all {changed} turn a wrong answer into a right one" in experiments_notes.iterations_notes(r, 3).here
    r["iterations_correct"]["1"] = k3 + changed  # behind by every change: each broke one
    assert f"all {changed} turn a right answer into a wrong one" in experiments_notes.iterations_notes(r, 3).here
    r["iterations_correct"]["1"] = k3  # level: they cannot all go one way
    assert "all " + str(changed) + " turn" not in experiments_notes.iterations_notes(r, 3).here
    r["iterations_correct"]["1"] = k1
    assert ("all overlap" in here) == bool(iv[:, 0].max() <= iv[:, 1].min())
    r["iterations_correct"]["10"] = 9800  # k = 10 far worse: its interval leaves the others
    r["iterations"]["10"] = 98.0
    top = int(np.argmax(experiments_notes.iteration_intervals(r)[:, 0])) + 1  # the highest lower bound, against the lowest upper
    assert f"The 95% intervals of k = {top} and k = 10 do not overlap" in experiments_notes.iterations_notes(r, 3).here

    ablation = experiments_notes.ablation_notes(r, 3).here
    own = r["ablations"]["routing"]
    for name in ("uniform", "random", "class_mean"):
        a = r["ablations"][name]
        assert f"{experiments_notes.RULE_NAMES[name]} {experiments_notes.signed(a['accuracy'] - own['accuracy'])}" in ablation
    r["ablations"]["class_mean"].update(accuracy=98.0, interval=[97.7, 98.3])
    assert "class-mean beyond it (no overlap)" in experiments_notes.ablation_notes(r, 3).here
    assert "uniform and random within the noise" in experiments_notes.ablation_notes(r, 3).here

    dyn = experiments_notes.dynamics_notes(r, 3).here
    change = r["dynamics"]["logit_change"]
    word = "rises" if change[-1] > change[0] else "falls"
    assert f"{word} at every iteration, from {change[0]:.1e} at t = 1 to {change[-1]:.1e} at t = 10" in dyn
    r["dynamics"]["logit_change"] = change[::-1]
    assert "falls at every iteration" in experiments_notes.dynamics_notes(r, 3).here

    m = np.array(shipped_results["confusion"])
    off = m - np.diag(np.diag(m))
    true, predicted = np.unravel_index(np.argmax(off), off.shape)  # the most frequent confusion comes first
    assert experiments_notes.confusion_note(shipped_results).startswith(
        f"{off.sum()} of 10,000 test digits are wrong ({off.sum() / 100:.2f}%); the most frequent confusions: "
        f"{true} read as {predicted} ({off.max()}×)")


def test_notes_of_a_model_trained_with_one_iteration_compare_nothing_with_itself():
    """For an r = 1 model (capsnet-mnist-r1's shipped results) k = 1 is the model as trained and its
    coupling is uniform: the notes say so instead of comparing k = 1 with k = 1 or the three
    coupling rules (all uniform then) with the routing."""
    from capsules.experiments import load_results, mcnemar_p
    from capsules.checkpoint import SHIPPED

    r1 = load_results(SHIPPED.with_name("capsnet-mnist-r1.safetensors"))
    assert r1 is not None and r1["model_iterations"] == 1
    assert r1["ablation_details"]["random_logit_std"] == 0.0  # one iteration: the final logits are all zero
    assert len({a["correct"] for a in r1["ablations"].values()}) == 1  # so every rule is the routing
    here = experiments_notes.iterations_notes(r1, 1).here
    assert here.startswith(f"k = 1 (uniform coupling), as trained: {r1['iterations']['1']:.2f}%")
    assert not re.search(r"between k = 1 and k = 1\b", here) and "(k = 1) to" not in here
    changed = round(r1["dynamics"]["changed_from_k1"][-1] * 100)
    assert f"{changed} of 10,000 predictions differ between k = 1 and k = 10" in here
    broke, fixed = r1["dynamics"]["right_to_wrong_from_k1"][-1], r1["dynamics"]["wrong_to_right_from_k1"][-1]
    p = mcnemar_p(broke, fixed)
    assert (f"k = 10: {broke} turn a right answer into a wrong one, {fixed} a wrong answer into a right one") in here
    assert f"McNemar's exact test on them, p = {p:.2g}: beyond the noise" in here and p < 0.05  # 55 against 11
    dyn = experiments_notes.dynamics_notes(r1, 1).here
    assert "ln 10 (uniform) at t = 1" in dyn and "e-0" not in dyn.split("entropy")[1]
    ablation = experiments_notes.ablation_notes(r1, 1).here
    assert "this comparison says nothing about routing" in ablation and "within the noise" not in ablation
    assert "this comparison says nothing" not in experiments_notes.ablation_notes(r1, 3).here  # r = 3: the usual verdict
