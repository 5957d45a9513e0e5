"""The shipped models (``checkpoints/``) and the paper's Table 1 beside what they measure.

A shipped model is ``<name>.safetensors`` with its JSON ``<name>.json`` beside it
(:mod:`capsules.checkpoint`, written by ``python -m capsules.ship``). :func:`list_shipped`
lists them from their JSONs alone, no weights read: the kind (``capsnet``, ``cnn``: the JSON's
``format``), the data set, the two training options Table 1 varies (routing iterations and
reconstruction weight, from ``train_config``), the epochs trained (by every run that trained the
weights, when one started from another's: :func:`stages_of`), the test score and how the weights
are stored. A newly shipped model appears by itself.

:func:`table1` sets the paper's Table 1 (Sabour, Frosst & Hinton 2017: test error in percent of
the baseline CNN and of CapsNet routed with 1 or 3 iterations, with and without the reconstruction
loss; MNIST, and MultiMNIST for three of its rows) beside the shipped models that match each row:
their measured error with a 95% Wilson interval (:func:`capsules.stats.binomial_interval`), the
epochs and the hardware, and which measured rows are within the noise of each other (overlapping
intervals, :func:`capsules.experiments.intervals_overlap`). A row no shipped model matches yet is
marked as in training, never filled in. ``python -m capsules.zoo`` prints it as markdown (the
docs/results.md), the dashboard's experiments page as a table.

:func:`routing_at_inference` asks the zoo the experiments page asks one model: does routing
matter at inference? From each shipped MNIST CapsNet's test-set experiments (the results file
beside it, :mod:`capsules.experiments`; nothing is evaluated), its accuracy with k = 1 (uniform
coupling), 3 and 10 routing iterations, and with random and class-mean coupling, and in words
how its own routing compares with the uniform coupling of k = 1, within the noise or beyond it.

:func:`robustness_against_cnn` sets the main CapsNet's robustness curves beside the baseline
CNN's, drawn on the same test digits (from their results files): per transform the range kept at
95% or more, the ends of the curve, the mean over it, the digits each model gets right at more of
the curve's points and a paired test of the difference of the means
(:func:`capsules.experiments.compare_robustness`).
"""

from .comparisons import (ROUTING_COLUMNS, RobustnessAgainstCNN, RoutingAtInference, main_model, robustness_against_cnn,
                          routing_at_inference)
from .shipped import (CHECKPOINT_DIR, DATASET_NAMES, KIND_NAMES, PENDING, Shipped, Stage, checkpoints_dir, dataset_of,
                      list_shipped, pretrained_on, stages_of)
from .table1 import COLUMNS, PAPER, PaperRow, Table1, Table1Row, table1

__all__ = ["CHECKPOINT_DIR", "COLUMNS", "DATASET_NAMES", "KIND_NAMES", "PAPER", "PENDING", "PaperRow", "Shipped",
           "Stage", "Table1", "Table1Row", "ROUTING_COLUMNS", "RobustnessAgainstCNN", "RoutingAtInference",
           "checkpoints_dir", "dataset_of", "list_shipped", "main_model", "robustness_against_cnn",
           "pretrained_on", "routing_at_inference", "stages_of", "table1"]
